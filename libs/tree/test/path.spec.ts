/** Path rules, as ZooKeeper's PathUtils.validatePath, plus the /synod reserved prefix. */
import { baseName, isReserved, joinPath, parentOf, pathError, sequenceSuffix } from '@app/tree';

describe('pathError (validatePath)', () => {
  const valid = ['/', '/a', '/a/b', '/a/b/c', '/a.b', '/.a', '/a.', '/..a', '/a..', '/...', '/a/.../b', '/zookeeper', '/ünïcödé', '/a b', '/a-b_c:1', '/\u00a0', '/\uffef'];
  it.each(valid)('accepts %j', (p) => {
    expect(pathError(p)).toBeNull();
  });

  const invalid: Array<[string, RegExp]> = [
    ['', /must not be empty/],
    ['a', /must start with "\/"/],
    ['a/b', /must start with "\/"/],
    ['/a/', /must not end with "\/"/],
    ['//', /must not end with/],
    ['//a', /empty node name at index 1/],
    ['/a//b', /empty node name at index 3/],
    ['/.', /"\." component at index 1/],
    ['/..', /"\.\." component at index 2/],
    ['/a/./b', /"\." component/],
    ['/a/../b', /"\.\." component/],
    ['/a/.', /"\." component/],
    ['/a/..', /"\.\." component/],
    ['/a\u0000b', /NUL character at index 2/],
    ['/a\u0001', /U\+0001 at index 2/],
    ['/a\u001f', /U\+001F/],
    ['/a\u007f', /U\+007F/],
    ['/a\u009f', /U\+009F/],
    ['/a\ud800', /U\+D800/],
    ['/\ud83d\ude00', /U\+D83D/], // astral characters are surrogate pairs: refused, as ZooKeeper
    ['/a\ue000', /U\+E000/],
    ['/a\uf8ff', /U\+F8FF/],
    ['/a\ufff0', /U\+FFF0/],
    ['/a\uffff', /U\+FFFF/],
  ];
  it.each(invalid)('refuses %j', (p, why) => {
    expect(pathError(p)).toMatch(why);
  });

  it('refuses non-strings', () => {
    expect(pathError(42)).toMatch(/must be a string/);
    expect(pathError(undefined)).toMatch(/must be a string/);
  });

  it('sequential paths may end with "/" (the counter is appended)', () => {
    expect(pathError('/a/', true)).toBeNull();
    expect(pathError('/', true)).toBeNull();
    expect(pathError('/a//', true)).toMatch(/empty node name/);
    expect(pathError('/a/.', true)).toBeNull(); // "/a/.1" is a fine name
    expect(pathError('a', true)).toMatch(/must start/);
  });
});

describe('path helpers', () => {
  it('parent, base name, join', () => {
    expect(parentOf('/a')).toBe('/');
    expect(parentOf('/a/b/c')).toBe('/a/b');
    expect(baseName('/a/b/c')).toBe('c');
    expect(joinPath('/', 'a')).toBe('/a');
    expect(joinPath('/a', 'b')).toBe('/a/b');
  });

  it('sequence suffix is 10 digits, zero padded', () => {
    expect(sequenceSuffix(0)).toBe('0000000000');
    expect(sequenceSuffix(42)).toBe('0000000042');
    expect(sequenceSuffix(2147483647)).toBe('2147483647');
  });

  it('/synod and its subtree are reserved, look-alikes are not', () => {
    expect(isReserved('/synod')).toBe(true);
    expect(isReserved('/synod/x')).toBe(true);
    expect(isReserved('/synodx')).toBe(false);
    expect(isReserved('/a/synod')).toBe(false);
  });
});
