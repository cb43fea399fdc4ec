/** @app/outbox — the local message table (outbox) pattern for business services over PostgreSQL. docs/outbox.md. */
export { Outbox, outboxSchema, MAX_PAYLOAD_BYTES } from './outbox.js';
export type { OutboxMessage, OutboxOptions } from './outbox.js';
export { OutboxRelay } from './relay.js';
export type { OutboxRelayOptions, RelayedRow } from './relay.js';
export { InboxConsumer, inboxSchema } from './inbox.js';
export type { InboxConsumerOptions, InboxHandler, InboxMessage } from './inbox.js';
export { CoordinatorConnection, CoordinatorCallError, LEADER_TRAILER } from './coordinator.js';
export type { CoordinatorConnectionOptions } from './coordinator.js';
export { quietLogger } from './types.js';
export type { OutboxLogger } from './types.js';
