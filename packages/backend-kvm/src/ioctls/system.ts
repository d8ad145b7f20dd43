/**
 * The `/dev/kvm` handle: capability queries and the factory of VM handles. Owns its fd.
 */
import { BadHandleError, InvalidError, UnsupportedError } from '@vmed/core';
import { F_GETFD, O_CLOEXEC, O_RDWR, lastErrno, libc } from '../abi/libc.js';
import {
  KVM_API_VERSION,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_GET_VCPU_MMAP_SIZE,
} from '../abi/kvm.js';
import { nativeError } from '../errors.js';
import { KvmVm } from './vm.js';

export class KvmSystem implements Disposable {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * Opens `/dev/kvm` and checks the API version (12, stable since Linux 2.6.22).
   * @throws `Unsupported` when the device is missing or the API version differs.
   */
  static open(path = '/dev/kvm'): KvmSystem {
    // The kernel copies the path string for the call; the new fd is ours until close().
    const fd = libc().open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) throw nativeError('kvm.open', lastErrno(), `cannot open ${path}`, { ENOENT: 'Unsupported', EACCES: 'Unsupported' });
    const system = new KvmSystem(fd);
    const version = system.#ioctl('kvm.getApiVersion', KVM_GET_API_VERSION, 0);
    if (version !== KVM_API_VERSION) {
      system.close();
      throw new UnsupportedError('kvm.open', `KVM API version ${version}, expected ${KVM_API_VERSION}`);
    }
    return system;
  }

  get fd(): number {
    if (this.#fd < 0) throw new BadHandleError('kvm.system');
    return this.#fd;
  }

  /** `KVM_CHECK_EXTENSION` on `/dev/kvm`: 0 when absent, else the capability's value. */
  checkExtension(cap: number): number {
    return Math.max(0, this.#ioctl('kvm.checkExtension', KVM_CHECK_EXTENSION, cap));
  }

  /** `KVM_GET_VCPU_MMAP_SIZE`: bytes to mmap from each vCPU fd (`struct kvm_run` and pages after it). */
  vcpuMmapSize(): number {
    return this.#ioctl('kvm.getVcpuMmapSize', KVM_GET_VCPU_MMAP_SIZE, 0);
  }

  /** `KVM_CREATE_VM` (machine type 0): a new VM, owned by the returned handle. */
  createVm(): KvmVm {
    const fd = this.#ioctl('kvm.createVm', KVM_CREATE_VM, 0);
    return KvmVm.fromSystem(fd, true, this.vcpuMmapSize());
  }

  /**
   * Wraps a VM fd an embedding VMM created. The handle never closes it. The fd is checked to
   * be open (`fcntl(F_GETFD)`) and to answer `KVM_CHECK_EXTENSION`.
   */
  adoptVm(fd: number): KvmVm {
    if (!Number.isInteger(fd) || fd < 0) throw new InvalidError('kvm.adoptVm', `vmFd ${String(fd)} is not a file descriptor`);
    // Reads the fd's flags; fails with EBADF for a closed fd. No buffer crosses.
    if (libc().fcntl(fd, F_GETFD, 0) < 0) throw nativeError('kvm.adoptVm', lastErrno(), `vmFd ${fd} is not open`);
    const vm = KvmVm.fromSystem(fd, false, this.vcpuMmapSize());
    // A VM fd answers KVM_CHECK_EXTENSION(KVM_CAP_USER_MEMORY = 3) with 1; other fds fail with ENOTTY.
    try {
      vm.checkExtension(3);
    } catch (cause) {
      throw new InvalidError('kvm.adoptVm', `fd ${fd} is not a KVM VM fd`, { cause });
    }
    return vm;
  }

  close(): void {
    if (this.#fd < 0) return;
    // VMs made from this fd keep their own references; closing it ends only the handle.
    libc().close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #ioctl(operation: string, request: number, arg: number): number {
    // Integer-argument ioctls on /dev/kvm: the kernel reads only `arg`.
    const r = libc().ioctlInt(this.fd, request, arg);
    if (r < 0) throw nativeError(operation, lastErrno(), `ioctl on /dev/kvm failed`);
    return r;
  }
}
