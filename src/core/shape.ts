/**
 * Shapes in the type system: a tensor type that carries its shape, the
 * type-level arithmetic that leaf ops need, and the run-time checks that back
 * every compile-time promise (types vanish at run time; the checks do not).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from './errors.js';

/**
 * One dimension: a literal size (`784`), a symbolic name bound at run time
 * (`'B'`), or `number` when nothing is known statically.
 * @category Shapes
 */
export type Dim = number | string;

/**
 * A shape: a tuple of dims.
 * @category Shapes
 */
export type Shape = readonly Dim[];

declare const shapeBrand: unique symbol;

/**
 * A `tf.Tensor` whose shape lives in its type. It is the same object as the
 * underlying tensor (the brand exists only for the compiler), so passing it
 * to plain tfjs costs nothing; coming back goes through {@link checked}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { checked, type Tensor } from 'sparsetune';
 * const x: Tensor<readonly ['B', 784]> = checked(tf.zeros([32, 784]), ['B', 784]);
 * ```
 * @category Shapes
 */
export type Tensor<S extends Shape = Shape> = tf.Tensor & {
  /** The shape, for the compiler only: never present at run time. */
  readonly [shapeBrand]: S;
};

/**
 * A message the compiler shows when a type-level shape rule fails. It is
 * never a value: functions ask for an argument of this type to make a call
 * ill-typed with a readable reason.
 * @category Shapes
 */
export interface ShapeErrorMessage<Msg extends string> {
  /** Why the call does not type-check. */
  readonly shapeError: Msg;
}

// ---------------------------------------------------------------------------
// Type-level arithmetic on small literal dims. Tuples stand in for numbers,
// so the work is bounded: dims of four or more digits, or products past 4096,
// give 'unknown' and the check is left to run time.

type Times<T extends unknown[], N extends number, Acc extends unknown[] = [], C extends unknown[] = []> =
  C['length'] extends N ? Acc : '4096' extends keyof Acc ? 'unknown' : Times<T, N, [...Acc, ...T], [...C, 0]>;
type Small<H extends number> = `${H}` extends `${infer _A}${infer _B}${infer _C}${infer _D}${infer _E}` ? false : true;
type Lit<H> = H extends number ? (number extends H ? false : Small<H>) : false;

/**
 * The number of elements of a shape of small literal dims, or `'unknown'`.
 * @category Shapes
 */
export type Product<S extends Shape, Acc extends unknown[] | 'unknown' = [0]> = Acc extends unknown[]
  ? S extends readonly [infer H, ...infer R extends Shape]
    ? Lit<H> extends true
      ? Product<R, Times<Acc, H & number>>
      : 'unknown'
    : Acc['length']
  : 'unknown';

type Tuple<N extends number, A extends unknown[] = []> = A['length'] extends N ? A : Tuple<N, [...A, 0]>;
type DivTuple<A extends unknown[], B extends unknown[], Q extends unknown[] = []> = B extends []
  ? 'indivisible'
  : A extends [...B, ...infer R]
  ? DivTuple<R, B, [...Q, 0]>
  : A extends [] ? Q['length'] : 'indivisible';

/**
 * `D / H` for small literal dims: a literal, `'indivisible'`, or `number` when unknown.
 * @category Shapes
 */
export type Divide<D extends Dim, H extends number> = [Lit<D>, Lit<H>] extends [true, true]
  ? H extends 0
    ? 'indivisible'
    : DivTuple<Tuple<D & number>, Tuple<H>>
  : number;

/** A shape with the dims known to be equal collapsed: a shared leading symbol is dropped. */
type StripShared<A extends Shape, B extends Shape> = A extends readonly [infer HA extends string, ...infer RA extends Shape]
  ? B extends readonly [HA, ...infer RB extends Shape] ? StripShared<RA, RB> : [A, B]
  : [A, B];

/**
 * `unknown` when reshaping `From` to `To` may be valid, or a
 * {@link ShapeErrorMessage} when both element counts are known and differ.
 * Shared leading symbolic dims (`['B', 28, 28]` → `['B', 784]`) cancel.
 * @category Shapes
 */
export type ReshapeCheck<From extends Shape, To extends Shape> = StripShared<From, To> extends [
  infer A extends Shape,
  infer B extends Shape,
]
  ? Product<A> extends infer PA
    ? Product<B> extends infer PB
      ? PA extends number
        ? PB extends number
          ? PA extends PB ? unknown : ShapeErrorMessage<`reshape: ${PA} elements cannot become ${PB}`>
          : unknown
        : unknown
      : never
    : never
  : never;

/**
 * `S` without the dim at index `A` (a non-negative literal); otherwise `Dim[]`.
 * @category Shapes
 */
export type DropAxis<S extends Shape, A extends number, C extends unknown[] = []> = number extends A
  ? Dim[]
  : S extends readonly [infer H, ...infer R extends Shape]
    ? C['length'] extends A ? R : [H, ...DropAxis<R, A, [...C, 0]>]
    : Dim[];

/**
 * `S` with the dim at index `A` replaced by `D`.
 * @category Shapes
 */
export type SetAxis<S extends Shape, A extends number, D extends Dim, C extends unknown[] = []> = number extends A
  ? Dim[]
  : S extends readonly [infer H, ...infer R extends Shape]
    ? C['length'] extends A ? [D, ...R] : [H, ...SetAxis<R, A, D, [...C, 0]>]
    : Dim[];

/**
 * `S` permuted by `P` (`P[i]` is the source axis of output axis `i`).
 * @category Shapes
 */
export type Permute<S extends Shape, P extends readonly number[]> = { -readonly [I in keyof P]: S[P[I] & number] };

type Suffixes<S extends Shape> = S extends readonly [unknown, ...infer R extends Shape] ? S | Suffixes<R> : S;
type OnesAllowed<S extends Shape> = { readonly [I in keyof S]: S[I] | 1 };

/**
 * The shapes that broadcast onto `S` without growing it: a trailing part of
 * `S`, any dim of which may be 1 (numpy's rule, restricted to one direction).
 * @category Shapes
 */
export type BroadcastsTo<S extends Shape> = number extends S['length'] ? Shape : OnesAllowed<Suffixes<S>>;

// ---------------------------------------------------------------------------
// Run time.

/** Bound values of symbolic dims, shared by the arguments of one op call. */
export type Bindings = Map<string, number>;

/** Marks "any number of leading dims" at the start of a run-time pattern. */
export const ANY_LEADING = '...';

function describe(pattern: Shape, env: Bindings): string {
  const parts = pattern.map((d) => {
    if (typeof d === 'number') return String(d);
    if (d === ANY_LEADING) return '...';
    const bound = env.get(d);
    return bound === undefined ? d : `${d}=${bound}`;
  });
  return `[${parts.join(', ')}]`;
}

/**
 * Checks `actual` against `pattern`, binding symbolic dims in `env`.
 * Throws a {@link ShapeError} naming the op, the argument, the declared dims
 * (with values bound so far) and the actual shape.
 */
export function bindShape(op: string, arg: string, actual: readonly number[], pattern: Shape, env: Bindings): void {
  const variadic = pattern[0] === ANY_LEADING;
  const fixed = variadic ? pattern.slice(1) : pattern;
  const fresh: string[] = [];
  const fail = (): never => {
    // Report with only the bindings made by earlier arguments.
    for (const f of fresh) env.delete(f);
    throw new ShapeError(`${op}: argument ${arg}: expected ${describe(pattern, env)}, got [${actual.join(', ')}]`);
  };
  if (variadic ? actual.length < fixed.length : actual.length !== fixed.length) fail();
  const offset = actual.length - fixed.length;
  for (let i = 0; i < fixed.length; i++) {
    const want = fixed[i]!;
    const got = actual[offset + i]!;
    if (typeof want === 'number') {
      if (want !== got) fail();
      continue;
    }
    const bound = env.get(want);
    if (bound === undefined) {
      env.set(want, got);
      fresh.push(want);
    } else if (bound !== got) {
      fail();
    }
  }
}

/**
 * Checks a tensor against several patterns for one op call.
 * `args` pairs each argument's name with its tensor and declared pattern.
 */
export function checkArgs(op: string, args: ReadonlyArray<readonly [string, tf.Tensor, Shape]>): Bindings {
  const env: Bindings = new Map();
  for (const [name, t, pattern] of args) bindShape(op, name, t.shape, pattern, env);
  return env;
}

/**
 * The boundary between plain tfjs and typed code: checks that `t` has
 * `shape` (binding symbolic dims consistently, so `['N', 'N']` demands a
 * square) and returns the same tensor, typed. Fails with a {@link ShapeError}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { checked } from 'sparsetune';
 * const images = checked(tf.zeros([8, 28, 28, 1]), ['B', 28, 28, 1]);
 * // checked(tf.zeros([8, 28, 28]), ['B', 28, 28, 1]) throws:
 * //   checked: argument t: expected [B, 28, 28, 1], got [8, 28, 28]
 * ```
 * @category Shapes
 */
export function checked<const S extends Shape>(t: tf.Tensor, shape: S, name = 't'): Tensor<S> {
  bindShape('checked', name, t.shape, shape, new Map());
  return t as Tensor<S>;
}

/** Types `t` as `Tensor<S>` without a check, for op results whose shape follows from checked inputs. */
export function typed<S extends Shape>(t: tf.Tensor): Tensor<S> {
  return t as Tensor<S>;
}
