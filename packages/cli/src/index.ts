export { parseArgs, stringOption, flag } from './args.js';
export type { ParsedArgs } from './args.js';
