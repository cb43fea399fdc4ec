export * from './types.js';
export * from './errors.js';
export * from './storage.js';
