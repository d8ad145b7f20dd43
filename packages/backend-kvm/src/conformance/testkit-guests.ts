/**
 * The testkit guests module, as the conformance target uses it: the agent image and its
 * mailbox ABI. Only the `./conformance` subpath reaches this (`@vmed/testkit` is an optional
 * peer dependency of this package).
 */
import type * as testkit from '@vmed/testkit';

/** The ABI constants and loaders of `@vmed/testkit`'s guests. */
export type GuestsModule = typeof testkit;

/** A loaded flat guest image. */
export type FlatImage = testkit.GuestImage;
