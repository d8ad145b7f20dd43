/**
 * One error hierarchy for all of vmed.
 *
 * Every error names the operation that failed (`operation`, e.g. `"kvm.setGsiRouting"`,
 * `"memory.read"`), carries a portable {@link VmedErrorCode}, the errno name where a system
 * call failed, and the underlying `cause`. Partial transfers say how far they got in
 * `bytesDone`. Backends translate their native failures into these; callers branch on
 * `code`, never on message text.
 */

/** Portable error codes, the same on every backend. */
export type VmedErrorCode =
  /** The backend or hypervisor lacks the capability that was asked for. */
  | 'Unsupported'
  /** An argument or a guest-supplied value is out of range or malformed. */
  | 'Invalid'
  /** The named object (device, UUID, region, route) does not exist. */
  | 'NotFound'
  /** The object already exists (duplicate UUID, overlapping region). */
  | 'Exists'
  /** A finite resource is exhausted (GSI routes, instances, memlock). */
  | 'NoSpace'
  /** The handle was disposed or never valid. */
  | 'BadHandle'
  /** A system call or hypervisor call failed. */
  | 'Io'
  /** The object is in a state where the operation is not allowed. */
  | 'State';

/** Everything an error may carry beyond its code and operation. */
export interface VmedErrorDetails {
  /** errno name of the failed system call, e.g. `"EBUSY"`. */
  errno?: string;
  /** The underlying error. */
  cause?: unknown;
  /** For partial reads and writes: how many bytes were transferred before the failure. */
  bytesDone?: number;
}

/** Base class of every error vmed throws on purpose. */
export class VmedError extends Error {
  override readonly name: string = 'VmedError';
  readonly code: VmedErrorCode;
  /** The operation that failed, as `"<area>.<verb>"`. */
  readonly operation: string;
  readonly errno: string | undefined;
  readonly bytesDone: number | undefined;

  constructor(code: VmedErrorCode, operation: string, message: string, details: VmedErrorDetails = {}) {
    const suffix = details.errno === undefined ? '' : ` (${details.errno})`;
    super(`${operation}: ${message}${suffix}`, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.operation = operation;
    this.errno = details.errno;
    this.bytesDone = details.bytesDone;
  }
}

/** The capability exists on other backends but not on this one (or not for this guest). */
export class UnsupportedError extends VmedError {
  override readonly name = 'UnsupportedError';
  constructor(operation: string, message: string, details?: VmedErrorDetails) {
    super('Unsupported', operation, message, details);
  }
}

export class InvalidError extends VmedError {
  override readonly name = 'InvalidError';
  constructor(operation: string, message: string, details?: VmedErrorDetails) {
    super('Invalid', operation, message, details);
  }
}

export class NotFoundError extends VmedError {
  override readonly name = 'NotFoundError';
  constructor(operation: string, message: string, details?: VmedErrorDetails) {
    super('NotFound', operation, message, details);
  }
}

export class ExistsError extends VmedError {
  override readonly name = 'ExistsError';
  constructor(operation: string, message: string, details?: VmedErrorDetails) {
    super('Exists', operation, message, details);
  }
}

export class NoSpaceError extends VmedError {
  override readonly name = 'NoSpaceError';
  constructor(operation: string, message: string, details?: VmedErrorDetails) {
    super('NoSpace', operation, message, details);
  }
}

export class BadHandleError extends VmedError {
  override readonly name = 'BadHandleError';
  constructor(operation: string, message = 'handle is closed', details?: VmedErrorDetails) {
    super('BadHandle', operation, message, details);
  }
}

export class IoError extends VmedError {
  override readonly name = 'IoError';
  constructor(operation: string, message: string, details?: VmedErrorDetails) {
    super('Io', operation, message, details);
  }
}

export class StateError extends VmedError {
  override readonly name = 'StateError';
  constructor(operation: string, message: string, details?: VmedErrorDetails) {
    super('State', operation, message, details);
  }
}

/** True when `e` is a {@link VmedError}, optionally with the given code. */
export function isVmedError(e: unknown, code?: VmedErrorCode): e is VmedError {
  return e instanceof VmedError && (code === undefined || e.code === code);
}

/** Formats a bigint or number as `0x…` for error messages. */
export function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}
