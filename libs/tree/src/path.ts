/**
 * Paths, as ZooKeeper's PathUtils.validatePath: absolute, no trailing slash (except the root), no empty
 * components, no "." or ".." components, no NUL, no control characters (U+0001–U+001F, U+007F–U+009F), no
 * surrogates or private-use characters (U+D800–U+F8FF) and nothing in U+FFF0–U+FFFF.
 *
 * `/synod` and everything under it is reserved for the system (ZooKeeper reserves `/zookeeper`): clients may
 * read there but commands that write there are refused.
 */

export const ROOT = '/';
export const RESERVED_PREFIX = '/synod';

/** Why `path` is not a valid node path, or null when it is. With `sequential`, a trailing '/' is fine. */
export function pathError(path: unknown, sequential = false): string | null {
  if (typeof path !== 'string') return `path must be a string, got ${typeof path}`;
  if (sequential) path = `${path}1`; // the server appends the counter: validate what will be created
  const p = path as string;
  if (p.length === 0) return 'path must not be empty; paths look like "/app/config"';
  if (p.charCodeAt(0) !== 0x2f) return `path "${p}" must start with "/"`;
  if (p.length === 1) return null;
  if (p.charCodeAt(p.length - 1) === 0x2f) return `path "${p}" must not end with "/"`;
  let last = 0x2f;
  for (let i = 1; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c === 0) return `path "${display(p)}" contains a NUL character at index ${i}`;
    if (c === 0x2f && last === 0x2f) return `path "${p}" has an empty node name at index ${i} (no "//")`;
    if (c === 0x2e && last === 0x2e) {
      if (p.charCodeAt(i - 2) === 0x2f && (i + 1 === p.length || p.charCodeAt(i + 1) === 0x2f)) {
        return `path "${p}" has a ".." component at index ${i}: relative paths are not allowed`;
      }
    } else if (c === 0x2e) {
      if (p.charCodeAt(i - 1) === 0x2f && (i + 1 === p.length || p.charCodeAt(i + 1) === 0x2f)) {
        return `path "${p}" has a "." component at index ${i}: relative paths are not allowed`;
      }
    } else if ((c > 0 && c <= 0x1f) || (c >= 0x7f && c <= 0x9f) || (c >= 0xd800 && c <= 0xf8ff) || c >= 0xfff0) {
      return `path "${display(p)}" has a disallowed character U+${c.toString(16).toUpperCase().padStart(4, '0')} at index ${i}`;
    }
    last = c;
  }
  return null;
}

export function isValidPath(path: string, sequential = false): boolean {
  return pathError(path, sequential) === null;
}

/** True for `/synod` and its descendants. */
export function isReserved(path: string): boolean {
  return path === RESERVED_PREFIX || path.startsWith(`${RESERVED_PREFIX}/`);
}

/** Parent of a valid non-root path. */
export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i === 0 ? ROOT : path.slice(0, i);
}

/** Last component of a valid non-root path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function joinPath(parent: string, name: string): string {
  return parent === ROOT ? `/${name}` : `${parent}/${name}`;
}

/** The 10-digit zero-padded suffix of a sequential node, as ZooKeeper's `%010d`. */
export function sequenceSuffix(n: number): string {
  return String(n).padStart(10, '0');
}

/** The path with control characters escaped, for messages. */
function display(p: string): string {
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    out += c <= 0x1f || (c >= 0x7f && c <= 0x9f) ? `\\u${c.toString(16).padStart(4, '0')}` : p[i];
  }
  return out;
}
