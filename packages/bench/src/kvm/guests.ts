/**
 * The project's guest programs the benchmarks run, from `@vmed/testkit`.
 */
export {
  DONE_OK,
  DONE_PORT,
  IRQ_COUNTS_ADDR,
  loadGuest,
  type GuestImage,
  type GuestParams,
  type GuestProgram,
} from '@vmed/testkit';
