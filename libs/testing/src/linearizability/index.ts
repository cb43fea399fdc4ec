export { checkOperations } from './checker.js';
export type {
  CheckInfo,
  CheckOptions,
  CheckResult,
  CheckVerdict,
  Model,
  Operation,
  PartitionResult,
} from './checker.js';
export {
  fencedCounterModel,
  kvRegisterModel,
  partitionByKey,
  sequenceOf,
  sequentialNamesModel,
  versionedRegisterModel,
} from './models.js';
export type {
  FencedInput,
  FencedOutput,
  FencedState,
  KvInput,
  KvOutput,
  SequentialInput,
  SequentialOutput,
  VersionedInput,
  VersionedOutput,
  VersionedState,
} from './models.js';
