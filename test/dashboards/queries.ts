/**
 * The chart's dashboards and alert rules as data for tests: every panel's PromQL targets (template variables
 * substituted the way Grafana would with "All" selected) and every alert expression.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export const CHART = join(import.meta.dirname, '../../helm/synod');
export const DASHBOARD_FILES = ['consensus.json', 'locks.json', 'transactions.json'] as const;
export const RULES_FILE = join(CHART, 'rules/synod.rules.yaml');

export interface Target {
  refId?: string;
  expr?: string;
  datasource?: unknown;
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown }[] };
}

export function loadDashboard(file: string): Dashboard {
  return JSON.parse(readFileSync(join(CHART, 'dashboards', file), 'utf8')) as Dashboard;
}

/** Every panel, rows' nested panels included. */
export function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** Panels that show data (not rows). */
export function dataPanels(d: Dashboard): Panel[] {
  return allPanels(d).filter((p) => p.type !== 'row');
}

/** A panel query with the dashboard's variables replaced as Grafana would with every variable at "All". */
export function substitute(expr: string, rateInterval = '1m'): string {
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}/g, rateInterval)
    .replace(/\$__interval|\$\{__interval\}/g, '15s')
    .replace(/\$\{datasource\}|\$datasource/g, '')
    .replace(/\$\{(job|instance)(:[a-z]+)?\}|\$(job|instance)\b/g, '.*');
}

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function loadRules(): { name: string; rules: Rule[] }[] {
  return (parse(readFileSync(RULES_FILE, 'utf8')) as { groups: { name: string; rules: Rule[] }[] }).groups;
}
