/**
 * Turning a failed Xen library call into a `VmedError`: the errno's name, a portable code the
 * caller can branch on, and the operation that failed.
 */
import { constants } from 'node:os';
import {
  BadHandleError,
  ExistsError,
  InvalidError,
  IoError,
  NoSpaceError,
  NotFoundError,
  UnsupportedError,
  type VmedError,
} from '@vmed/core';
import { lastErrno } from '../abi/xen.js';

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  // Several names share a value (EAGAIN/EWOULDBLOCK): keep the first, the canonical one.
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

/** `"EBUSY"` for 16; `"errno 999"` for values libc does not name. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/**
 * A `VmedError` for a native call that failed with `errno`. The code follows the errno where
 * the meaning is portable (ENOENT → NotFound, EEXIST → Exists, ENOSPC/ENOMEM → NoSpace, EINVAL →
 * Invalid, EBADF → BadHandle, EOPNOTSUPP/ENOSYS → Unsupported); anything else is `Io`.
 */
export function errorFromErrno(operation: string, message: string, errno: number, cause?: unknown): VmedError {
  const details = { errno: errnoName(errno), ...(cause === undefined ? {} : { cause }) };
  switch (errnoNames.get(errno)) {
    case 'ENOENT':
    case 'ESRCH':
      return new NotFoundError(operation, message, details);
    case 'EEXIST':
    case 'EBUSY':
      return new ExistsError(operation, message, details);
    case 'ENOSPC':
    case 'ENOMEM':
      return new NoSpaceError(operation, message, details);
    case 'EINVAL':
    case 'ERANGE':
      return new InvalidError(operation, message, details);
    case 'EBADF':
      return new BadHandleError(operation, message, details);
    case 'EOPNOTSUPP':
    case 'ENOSYS':
    case 'ENOTTY':
      return new UnsupportedError(operation, message, details);
    default:
      return new IoError(operation, message, details);
  }
}

/** The error for the native call that just returned failure on this thread. */
export function lastError(operation: string, message: string): VmedError {
  return errorFromErrno(operation, message, lastErrno());
}
