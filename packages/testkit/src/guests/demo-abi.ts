/**
 * What a host sees of the demo guest (`guests/demo`): the exit code it writes to the done
 * port and the MSI vector it programs into edu. The source of truth is
 * `guests/demo/abi.inc`; `test/guests/abi.test.ts` checks that these agree with it.
 *
 * The demo finds the serial function by PCI id (`SERIAL_VENDOR_ID:SERIAL_DEVICE_ID`, given
 * at link time: by default the serial model's 1b36:0002) and edu (1234:11e8) on bus 0,
 * reads the BARs the host assigned, enables decoding and bus mastering, prints through the
 * UART, and uses MSI for edu's completions.
 * @module
 */

export const DEMO_OK = 0;
export const DEMO_ERR_NO_SERIAL = 1;
export const DEMO_ERR_SERIAL_BAR = 2;
export const DEMO_ERR_NO_EDU = 3;
export const DEMO_ERR_EDU_BAR = 4;
export const DEMO_ERR_EDU_ID = 5;
export const DEMO_ERR_EDU_LIVENESS = 6;
export const DEMO_ERR_EDU_NO_MSI = 7;
export const DEMO_ERR_IRQ_TIMEOUT = 8;
export const DEMO_ERR_FACTORIAL = 9;
export const DEMO_ERR_DMA = 10;
export const DEMO_ERR_UART_STUCK = 11;

/** The MSI vector the demo programs into edu's MSI capability. */
export const DEMO_EDU_VECTOR = 0x50;
/** Bytes the demo DMAs to edu's buffer and back. */
export const DEMO_DMA_LENGTH = 256;
/** The demo asks edu for factorial(10) = 3628800. */
export const DEMO_FACTORIAL_INPUT = 10;

const EXIT_MESSAGES: readonly string[] = [
  'ok',
  'serial device not found',
  'serial BAR0 is not an assigned I/O BAR',
  'edu not found on bus 0',
  'edu BAR0 is not an assigned memory BAR below 4 GiB',
  'edu identification register is wrong',
  'edu liveness check failed',
  'edu has no MSI capability',
  "timed out waiting for edu's interrupt",
  'edu computed the wrong factorial',
  'DMA round trip corrupted the buffer',
  'UART stopped accepting bytes',
];

/** What a demo exit code means (the guest prints the same text, when it has a UART). */
export function demoExitMessage(code: number): string {
  return EXIT_MESSAGES[code] ?? `unknown exit code 0x${code.toString(16)}`;
}
