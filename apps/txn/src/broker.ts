/**
 * The contract between the coordinator service and its message broker (the outbox's delivery side): Publish
 * stores a message in the replicated store (idempotent by message id), Subscribe records a consumer, and the
 * leader delivers stored messages to subscribed consumers until acknowledged, in order per key.
 */
import type { Leadership, TxnStore } from '@app/txn';
import type { TxnMetrics } from './metrics.js';
import type { Logger } from './engine.js';

export interface PublishInput {
  messageId: string;
  topic: string;
  key: string;
  payload: Buffer;
  headers: Record<string, string>;
}

export interface SubscribeInput {
  topic: string;
  consumer: string;
  address: string;
}

export interface MessageBroker {
  /** Stores the message (guarded by the leadership); `duplicate` when this message id was stored before. */
  publish(m: PublishInput, lead: Leadership): Promise<{ duplicate: boolean; sequence: number }>;
  subscribe(s: SubscribeInput, lead: Leadership): Promise<void>;
  /** Starts delivering (on the leader only), resuming from what the store says was acknowledged. */
  becomeLeader(lead: Leadership): Promise<void>;
  stepDown(): void;
  close(): Promise<void>;
}

export type BrokerFactory = (store: TxnStore, metrics: TxnMetrics, log: Logger) => MessageBroker;
