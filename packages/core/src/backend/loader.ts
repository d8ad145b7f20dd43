/**
 * Loads the backend a config names, by `import()` only when it is named: a KVM user never
 * loads the Xen bindings, and core has no static dependency on any backend.
 */
import type { MediatorConfig } from '../config.js';
import { BACKEND_MODULES } from '../config.js';
import { NotFoundError, VmedError, isVmedError } from '../errors.js';
import type { Backend, BackendModule } from './contract.js';

/** How a module is imported; tests and bundlers may pass their own. */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

const defaultImporter: ModuleImporter = (specifier) => import(specifier);

/**
 * Imports the backend module for `config.hypervisor` and creates a session with the
 * hypervisor's section of the config (`config.kvm`, `config.xen`, `config.sim`). A missing
 * package or an unavailable hypervisor is one clear error line.
 */
export async function loadBackend(config: MediatorConfig, importer: ModuleImporter = defaultImporter): Promise<Backend> {
  const operation = 'mediator.loadBackend';
  const name = config.hypervisor;
  const specifier = config.backendModule ?? (BACKEND_MODULES as Record<string, string | undefined>)[name];
  if (specifier === undefined) throw new NotFoundError(operation, `no backend module for hypervisor "${name}"`);

  let module: unknown;
  try {
    module = await importer(specifier);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new NotFoundError(operation, `hypervisor "${name}" needs the package ${specifier}, which is not installed (npm install ${specifier})`, { cause: e });
    }
    throw new VmedError('Io', operation, `cannot load ${specifier}: ${(e as Error).message}`, { cause: e });
  }
  const factory = (module as Partial<BackendModule>).createBackend;
  if (typeof factory !== 'function') throw new NotFoundError(operation, `${specifier} does not export createBackend()`);

  const section = config[name];
  const options = typeof section === 'object' && section !== null ? (section as Record<string, unknown>) : {};
  try {
    return await factory(options);
  } catch (e) {
    const detail = isVmedError(e) ? e.message : (e as Error).message;
    throw new VmedError(isVmedError(e) ? e.code : 'Io', operation, `the ${name} backend could not start: ${detail}`, { cause: e });
  }
}
