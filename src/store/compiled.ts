/**
 * Statements built once. Kysely builds and compiles a query anew on every call, and for the small
 * statements of a request that costs more CPU than the database running them (issue 16's profile:
 * query building was most of a request's CPU). A hot statement is therefore built once per shape,
 * with placeholders where its values go, and run again with each call's values: the SQL text and
 * the order of its parameters come from Kysely as before, only the building is not repeated.
 *
 * A shape is everything that changes the SQL: the dialect, whether rows are locked, the `key` the
 * caller gives (which must name every choice the builder makes from anything but `values`), and,
 * for each value, whether it is undefined or null (kept as they are, so `$if` and `??` in the
 * builder see them) and the length of a list. Lists longer than SHORT_LIST are not cached: each
 * length would be a statement of its own, and long lists come from rare bulk work.
 */
import { CompiledQuery, type Compilable, type QueryResult } from 'kysely';
import type { QueryContext } from './context.js';

/** Values of a statement: scalars, or lists of scalars (for `in`). */
export type Values = Record<string, unknown>;

/** Lists up to this long are cached by length; longer ones are built each time. */
const SHORT_LIST = 8;
/** Shapes kept: keys that carry per-call values (a hold's end) must not grow the cache forever. */
const MAX_SHAPES = 512;

/** Where a value goes in a compiled statement's parameters. */
class Slot {
  constructor(
    readonly name: string,
    readonly index: number,
  ) {}
}

interface Shape {
  compiled: CompiledQuery;
  /** For each parameter: the value's name and list index, or null for a constant Kysely put there. */
  slots: Array<Slot | null>;
}

const shapes = new Map<string, Shape>();

/** The shape's key, or undefined when the values cannot be cached (a long list). */
function shapeKey(ctx: QueryContext, key: string, values: Values): string | undefined {
  let out = `${ctx.dialect}${ctx.lockRows ? '+lock' : ''}|${key}`;
  for (const name in values) {
    const value = values[name];
    if (value === undefined) out += `|${name}:u`;
    else if (value === null) out += `|${name}:n`;
    else if (Array.isArray(value)) {
      if (value.length > SHORT_LIST) return undefined;
      out += `|${name}:${value.length}`;
    }
  }
  return out;
}

function placeholders(values: Values): Values {
  const out: Values = {};
  for (const name in values) {
    const value = values[name];
    if (value === undefined || value === null) out[name] = value;
    else if (Array.isArray(value)) out[name] = value.map((_, i) => new Slot(name, i));
    else out[name] = new Slot(name, -1);
  }
  return out;
}

function compile(build: (values: Values) => Compilable<unknown>, values: Values): Shape {
  const compiled = build(placeholders(values)).compile();
  return { compiled, slots: compiled.parameters.map((p) => (p instanceof Slot ? p : null)) };
}

function fill(shape: Shape, values: Values): CompiledQuery {
  const { compiled, slots } = shape;
  const parameters = compiled.parameters.map((constant, i) => {
    const slot = slots[i];
    if (!slot) return constant;
    const value = values[slot.name];
    return slot.index < 0 ? value : (value as unknown[])[slot.index];
  });
  return { query: compiled.query, queryId: compiled.queryId, sql: compiled.sql, parameters };
}

/**
 * Runs the statement `build` makes from `values`, building it only the first time its shape is
 * seen. `build` must use `values` (not the caller's variables) for everything that varies between
 * calls of the same `key`, and read nothing from them but `=== undefined`, `=== null` and lengths.
 */
export async function run<V extends Values, R>(ctx: QueryContext, key: string, values: V, build: (values: V) => Compilable<R>): Promise<QueryResult<R>> {
  const k = shapeKey(ctx, key, values);
  let query: CompiledQuery<R>;
  if (k === undefined) {
    query = build(values).compile();
  } else {
    let shape = shapes.get(k);
    if (shape === undefined) {
      shape = compile(build as (values: Values) => Compilable<unknown>, values);
      if (shapes.size >= MAX_SHAPES) shapes.delete(shapes.keys().next().value!);
      shapes.set(k, shape);
    }
    query = fill(shape, values) as CompiledQuery<R>;
  }
  return ctx.direct ? (ctx.direct(query) as QueryResult<R>) : ctx.db.executeQuery(query);
}

/** The rows of a cached statement. */
export async function rows<V extends Values, R>(ctx: QueryContext, key: string, values: V, build: (values: V) => Compilable<R>): Promise<R[]> {
  return (await run(ctx, key, values, build)).rows;
}

/** The first row of a cached statement, if any. */
export async function first<V extends Values, R>(ctx: QueryContext, key: string, values: V, build: (values: V) => Compilable<R>): Promise<R | undefined> {
  return (await run(ctx, key, values, build)).rows[0];
}
