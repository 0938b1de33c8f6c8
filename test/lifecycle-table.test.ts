/**
 * The node lifecycle of src/core/lifecycle.ts, transition by transition, without a database: for
 * every event, every state it starts from and every aftercare, where the node goes and what it
 * clears; and that the event leaves a node in any other state alone. The expectations are written
 * out here as docs/api.md's lifecycle section states them, not read back from the table.
 */
import { aftercareOf, AFTERCARES, detachesFirst, move, NODE_LIFECYCLE, nextState, type Aftercare, type NodeEvent, type NodeMark, type Target } from '../src/core/lifecycle.js';
import { NODE_STATES, type NodeState } from '../src/api/states.js';

type Expected = { from: NodeState[]; to: Record<Aftercare, Target>; clears: NodeMark[]; countsUse: boolean };

const same = (state: Target): Record<Aftercare, Target> => ({ none: state, reclaim: state, deprovision: state });
const afterUse = { none: 'ready', reclaim: 'reclaiming', deprovision: 'reclaiming' } as const;
const quarantine = { none: 'failed', reclaim: 'failed', deprovision: 'reclaiming' } as const;
const leaving: NodeMark[] = ['session', 'claim', 'hold', 'attempts', 'reporter'];

const EXPECTED: Record<NodeEvent, Expected> = {
  'allocated': { from: ['ready'], to: same('deployed'), clears: [], countsUse: false },
  'allocation-undone': { from: ['deployed'], to: same('ready'), clears: [...leaving, 'keys'], countsUse: false },
  'released': { from: ['deployed', 'held'], to: afterUse, clears: leaving, countsUse: true },
  'session-ended': { from: ['deployed', 'held'], to: afterUse, clears: leaving, countsUse: true },
  'reported-broken': { from: ['deployed', 'held'], to: quarantine, clears: leaving, countsUse: false },
  'keys-failed': { from: ['deployed', 'held'], to: quarantine, clears: leaving, countsUse: false },
  'held': { from: ['deployed', 'held'], to: same('held'), clears: [], countsUse: false },
  'hold-ended': { from: ['held'], to: afterUse, clears: leaving, countsUse: true },
  'reclaim-succeeded': { from: ['reclaiming'], to: same('ready'), clears: ['claim', 'attempts', 'keys'], countsUse: true },
  'reclaim-failed': { from: ['reclaiming'], to: same('failed'), clears: ['claim', 'attempts'], countsUse: false },
  'deprovision-succeeded': { from: ['reclaiming'], to: same('disabled'), clears: ['claim', 'keys'], countsUse: false },
  'deprovision-failed': { from: ['reclaiming'], to: same('reclaiming'), clears: ['claim', 'reporter'], countsUse: false },
  'deprovision-abandoned': { from: ['reclaiming'], to: same('failed'), clears: ['claim', 'attempts', 'reporter'], countsUse: false },
  'returned-to-service': { from: ['failed', 'disabled'], to: same('reclaiming'), clears: ['claim', 'attempts', 'reporter'], countsUse: false },
  'disabled': { from: ['ready', 'failed', 'held'], to: same('disabled'), clears: leaving, countsUse: false },
  'ready-too-long': { from: ['ready'], to: same('reclaiming'), clears: ['claim', 'attempts', 'reporter'], countsUse: false },
  'attached': { from: ['deployed'], to: same('deployed'), clears: ['attach'], countsUse: false },
  'attach-failed': { from: ['deployed'], to: quarantine, clears: [...leaving, 'attach'], countsUse: false },
  'detached': { from: ['reclaiming'], to: same('as-recorded'), clears: ['detach', 'claim'], countsUse: false },
  'detach-failed': { from: ['reclaiming'], to: same('failed'), clears: ['detach', 'claim'], countsUse: false },
};

describe('every event of the node lifecycle', () => {
  test('the table has exactly the events documented', () => {
    expect(Object.keys(NODE_LIFECYCLE).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  const cases = Object.entries(EXPECTED).flatMap(([event, expected]) =>
    NODE_STATES.flatMap((state) => AFTERCARES.map((aftercare) => [event as NodeEvent, state, aftercare, expected] as const)),
  );

  test.each(cases)('%s from %s (aftercare %s)', (event, state, aftercare, expected) => {
    const to = nextState(event, state, aftercare);
    if (expected.from.includes(state)) expect(to).toBe(expected.to[aftercare]);
    else expect(to).toBeUndefined();
  });

  test.each(Object.entries(EXPECTED))('%s clears what it must and counts a use only after use', (event, expected) => {
    const transition = NODE_LIFECYCLE[event as NodeEvent];
    expect([...transition.clears].sort()).toEqual([...expected.clears].sort());
    expect(transition.countsUse).toBe(expected.countsUse);
  });

  test('only a failed deprovision counts an attempt, and only a finished one retires the node', () => {
    const counting = Object.entries(NODE_LIFECYCLE).filter(([, t]) => t.countsAttempt).map(([e]) => e);
    const retiring = Object.entries(NODE_LIFECYCLE).filter(([, t]) => t.retires).map(([e]) => e);
    expect(counting).toEqual(['deprovision-failed']);
    expect(retiring).toEqual(['deprovision-succeeded']);
  });

  test('a node leaving its session always loses it, and a node joining one never loses anything', () => {
    for (const [event, t] of Object.entries(NODE_LIFECYCLE)) {
      const fromSession = t.from.every((s) => s === 'deployed' || s === 'held');
      const intoNoSession = Object.values(t.to).every((s) => s !== 'deployed' && s !== 'held');
      if (fromSession && intoNoSession) expect([event, t.clears.includes('session')]).toEqual([event, true]);
    }
    expect(NODE_LIFECYCLE.allocated.clears).toEqual([]);
  });
});

describe('aftercare', () => {
  const staticPool = (reclaim: string[] | null) => ({ reclaim, command: null });
  const commandPool = { reclaim: null, command: { provision: ['make'] } };

  test('a static pool without a reclaim command needs none, unless the node carries keys', () => {
    expect(aftercareOf(staticPool(null), { contextualized: false })).toBe('none');
    expect(aftercareOf(staticPool(null), { contextualized: true })).toBe('reclaim');
  });

  test('a static pool with a reclaim command reclaims', () => {
    expect(aftercareOf(staticPool(['./reinstall.sh']), { contextualized: false })).toBe('reclaim');
  });

  test("a command pool's node is destroyed, keys or not", () => {
    expect(aftercareOf(commandPool, { contextualized: false })).toBe('deprovision');
    expect(aftercareOf(commandPool, { contextualized: true })).toBe('deprovision');
  });

  test('a pool that left the configuration goes through reclaim, which decides', () => {
    expect(aftercareOf(undefined, { contextualized: false })).toBe('reclaim');
  });
});

describe('moves', () => {
  test('a move carries its transition, the pools that need no aftercare, and its extras', () => {
    const held = move('held', ['c7'], { holdUntil: 1234 });
    expect(held.transition).toBe(NODE_LIFECYCLE.held);
    expect(held.poolsWithoutAftercare).toEqual(['c7']);
    expect(held.holdUntil).toBe(1234);
    expect(move('released').poolsWithoutAftercare).toEqual([]);
  });
});

describe('isolation', () => {
  test('with hooks, every move that takes a node out of its session detaches it first, and no other', () => {
    const detaching = (Object.keys(NODE_LIFECYCLE) as NodeEvent[]).filter((event) => detachesFirst(move(event, [], { isolate: true })));
    expect(detaching.sort()).toEqual(
      ['allocation-undone', 'attach-failed', 'disabled', 'hold-ended', 'keys-failed', 'released', 'reported-broken', 'session-ended'].sort(),
    );
    expect(detachesFirst(move('released'))).toBe(false);
  });
});

describe("docs/api.md's lifecycle table", () => {
  test('is the same table as the code', async () => {
    const { readFileSync } = await import('node:fs');
    const doc = readFileSync(new URL('../docs/api.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Lifecycle'), doc.indexOf('## Where cinode differs'));
    const rows = section
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .map((line) => line.split('|').map((cell) => cell.trim()));
    const documented = Object.fromEntries(
      rows.map(([, event, , from, to, clears]) => {
        const [none, reclaim, deprovision] = to!.split(' / ');
        return [
          event!.replaceAll('`', ''),
          { from: from!.split(', '), to: { none, reclaim, deprovision }, clears: clears === '' ? [] : clears!.split(', ') },
        ];
      }),
    );
    const coded = Object.fromEntries(
      Object.entries(NODE_LIFECYCLE).map(([event, t]) => [event, { from: [...t.from], to: { ...t.to }, clears: [...t.clears] }]),
    );
    expect(documented).toEqual(coded);
  });
});
