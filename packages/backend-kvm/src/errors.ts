/**
 * Native failures as vmed errors: one function turns an errno from a failed system call into
 * the `VmedError` subclass its portable code calls for, with the operation (`"kvm.irqfd"`),
 * the errno name and a message that says what was asked.
 */
import {
  BadHandleError,
  ExistsError,
  InvalidError,
  IoError,
  NoSpaceError,
  NotFoundError,
  UnsupportedError,
  type VmedError,
  type VmedErrorCode,
} from '@vmed/core';
import { errnoName } from './abi/libc.js';

const DEFAULT_CODES: Readonly<Record<string, VmedErrorCode>> = {
  EINVAL: 'Invalid',
  EFAULT: 'Invalid',
  EEXIST: 'Exists',
  EBUSY: 'Exists',
  ENOENT: 'NotFound',
  ENXIO: 'NotFound',
  ENODEV: 'NotFound',
  ENOSPC: 'NoSpace',
  ENOMEM: 'NoSpace',
  EMFILE: 'NoSpace',
  ENFILE: 'NoSpace',
  E2BIG: 'NoSpace',
  EBADF: 'BadHandle',
  ENOTTY: 'Unsupported',
  ENOSYS: 'Unsupported',
  EOPNOTSUPP: 'Unsupported',
};

/** Builds the error for a failed native call; `codes` overrides the errno → code mapping. */
export function nativeError(
  operation: string,
  errno: number,
  message: string,
  codes: Readonly<Record<string, VmedErrorCode>> = {},
): VmedError {
  const name = errnoName(errno);
  const code = codes[name] ?? DEFAULT_CODES[name] ?? 'Io';
  const details = { errno: name };
  switch (code) {
    case 'Invalid':
      return new InvalidError(operation, message, details);
    case 'Exists':
      return new ExistsError(operation, message, details);
    case 'NotFound':
      return new NotFoundError(operation, message, details);
    case 'NoSpace':
      return new NoSpaceError(operation, message, details);
    case 'BadHandle':
      return new BadHandleError(operation, message, details);
    case 'Unsupported':
      return new UnsupportedError(operation, message, details);
    default:
      return new IoError(operation, message, details);
  }
}

/** Throws `BadHandle` for `operation` when `closed`. */
export function assertOpen(closed: boolean, operation: string): void {
  if (closed) throw new BadHandleError(operation);
}

/** Checks that `value` is an integer in `[min, max]`, else `Invalid` naming `what`. */
export function checkInt(value: number, min: number, max: number, operation: string, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidError(operation, `${what} ${String(value)} is not an integer in [${min}, ${max}]`);
  }
}

/** Checks that `value` is a bigint in `[min, max]`, else `Invalid` naming `what`. */
export function checkBigInt(value: bigint, min: bigint, max: bigint, operation: string, what: string): void {
  if (typeof value !== 'bigint' || value < min || value > max) {
    throw new InvalidError(operation, `${what} ${String(value)} is not in [0x${min.toString(16)}, 0x${max.toString(16)}]`);
  }
}
