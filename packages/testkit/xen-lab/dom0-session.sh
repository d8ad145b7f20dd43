#!/bin/sh
# Runs in dom0, chrooted into the host's root (see dom0-init.sh): starts the Xen toolstack's
# daemons, then runs the command the host left in the results folder with its output going to
# files there, and records the exit status last. The host streams those files while they grow
# and takes the status file as the end of the run.
R=/run/vmed-lab/results
export PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp/home TMPDIR=/tmp LANG=C.UTF-8
mkdir -p "$HOME" /run/xenstored /run/xen /var/lib/xen/dump /var/log/xen

marker() { echo "VMED-LAB: $*"; }
finish() {
	echo "$1" >"$R/status.tmp" && mv "$R/status.tmp" "$R/status"
	marker exit "$1"
	exit "$1"
}
# Polls a readiness check: each daemon says it is ready only by answering.
await() {
	what=$1
	shift
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -le 300 ] || { marker fail "$what did not come up"; finish 125; }
		sleep 0.1
	done
}

[ -f "$R/command.sh" ] || { marker fail "no command.sh in the results folder"; finish 125; }

xenstored --pid-file=/run/xenstored.pid || { marker fail "xenstored"; finish 125; }
await xenstored xenstore-exists /
marker xenstored
xen-init-dom0 || { marker fail "xen-init-dom0"; finish 125; }
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen || { marker fail "xenconsoled"; finish 125; }
await xenconsoled test -s /run/xenconsoled.pid
marker ready

marker command-start
sh "$R/command.sh" </dev/null >"$R/stdout" 2>"$R/stderr"
finish $?
