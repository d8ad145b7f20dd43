export * from './errors.js';
export * from './address.js';
export * from './backend/index.js';
export * from './device/model.js';
export * from './migration/state-codec.js';
