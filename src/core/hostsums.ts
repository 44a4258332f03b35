/**
 * The sums behind a sparse weight gradient, Σ over rows r of
 * a[r, i]·g[r, j] for each wanted entry (i, j), where the data lives in
 * this thread. On wasm they run in a WebAssembly function of our own
 * (below, about 500 bytes) on tfjs's own heap, without copying anything
 * out: about 1 ns a product on the ViT's kernels, where V8 runs the same
 * loop in JavaScript at about 3 ns (a bounds check and a float conversion
 * on every load) and those sums were most of what GPS cost above BitFit.
 * On cpu, or where the heap cannot be reached, the loop runs in JavaScript.
 *
 * Three more loops of ours run there, with WebAssembly's SIMD, each in a
 * module of its own: the column sums behind bias and layer-norm gradients
 * ({@link columnSumsInto}) and Adam's step ({@link adamInWasm}), both the
 * floats of the tfjs kernels they replace, without their transposes and
 * dispatches; and products of several small matrices at once
 * ({@link batchMatMulInto}: the attention's), which tfjs's wasm
 * BatchMatMul runs in a scalar loop.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

// --- The function, `sums(a, g, rows, cols, countBytes, rowsInBlocks, origins, strideG, out)`,
// all byte addresses and sizes: for each block of eight rows r … r + 7 below
// rowsInBlocks and each entry q, out[q] += Σ_t a[origins[r + t] + rows[q]]·
// g[r + t][cols[q]] in float64, where origins[r] is where row r starts in a
// (r·K for a matrix; a window's corner for a convolution's input) and rows[q],
// cols[q] are the entry's offsets from there. Eight rows at a time (measured
// best against 4, 16 and 32), so each accumulator is read and written once
// per eight products.
const I32 = 0x7f;
const [GET, SET, ADD, GE_S, BR_IF, BR, BLOCK, LOOP, END, CONST] = [0x20, 0x21, 0x6a, 0x4e, 0x0d, 0x0c, 0x02, 0x03, 0x0b, 0x41];
const [LOAD_I32, LOAD_F32, LOAD_F64, STORE_F64, PROMOTE, MUL_F64, ADD_F64] = [0x28, 0x2a, 0x2b, 0x39, 0xbb, 0xa2, 0xa0];
const VOID = 0x40;
const BLOCK_ROWS = 8;
// Parameters 0–8 as above; locals: 9 r (bytes into origins), 10 q·4, 11 a's
// entry address, 12 g's, 13 out's, 14 a block's stride of g, 15–22 the block's origins.
const [A, G, ROWS, COLS, COUNT, ROWSB, ORIGINS, SG, OUT] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
const [R, Q, IA, JG, O, SGB, O0] = [9, 10, 11, 12, 13, 14, 15];
/** `a[origin t + entry]·g[row t]` as float64, then g's address a row on. */
/** `i32.const n`: its immediate is signed LEB128 (a bare byte only up to 63). */
const int = (n: number): number[] => [CONST, ...sleb(n)];
const sleb = (n: number): number[] => (n >= -64 && n < 64 ? [n & 0x7f] : [(n & 0x7f) | 0x80, ...sleb(n >> 7)]);
const term = (t: number) => [GET, IA, GET, O0 + t, ADD, LOAD_F32, 2, 0, PROMOTE, GET, JG, LOAD_F32, 2, 0, PROMOTE, MUL_F64, GET, JG, GET, SG, ADD, SET, JG];
/** The sum of terms `from` … `from + m − 1` as a balanced tree: short chains of dependent adds. */
const tree = (from: number, m: number): number[] => (m === 1 ? term(from) : [...tree(from, m >> 1), ...tree(from + (m >> 1), m - (m >> 1)), ADD_F64]);
const body = [
  // A block's stride of g: BLOCK_ROWS rows.
  ...int(0), SET, SGB,
  ...Array.from({ length: BLOCK_ROWS }, () => [GET, SGB, GET, SG, ADD, SET, SGB]).flat(),
  // For each block of rows: its origins, then …
  BLOCK, VOID, LOOP, VOID,
  GET, R, GET, ROWSB, GE_S, BR_IF, 1,
  ...Array.from({ length: BLOCK_ROWS }, (_, t) => [GET, ORIGINS, GET, R, ADD, LOAD_I32, 2, 4 * t, GET, A, ADD, SET, O0 + t]).flat(),
  ...int(0), SET, Q,
  // … for each entry: out[q] += the block's products.
  BLOCK, VOID, LOOP, VOID,
  GET, Q, GET, COUNT, GE_S, BR_IF, 1,
  GET, ROWS, GET, Q, ADD, LOAD_I32, 2, 0, SET, IA,
  GET, G, GET, COLS, GET, Q, ADD, LOAD_I32, 2, 0, ADD, SET, JG,
  GET, OUT, GET, Q, GET, Q, ADD, ADD, SET, O,
  GET, O, GET, O, LOAD_F64, 3, 0,
  ...tree(0, BLOCK_ROWS),
  ADD_F64, STORE_F64, 3, 0,
  GET, Q, ...int(4), ADD, SET, Q,
  BR, 0, END, END,
  // The next block.
  GET, G, GET, SGB, ADD, SET, G,
  GET, R, ...int(4 * BLOCK_ROWS), ADD, SET, R,
  BR, 0, END, END, END,
];
const uleb = (n: number): number[] => (n < 0x80 ? [n] : [(n & 0x7f) | 0x80, ...uleb(n >>> 7)]);
const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
const code = [1, 6 + BLOCK_ROWS, I32, ...body];
/**
 * A module of one function `fn` with parameters of types `params` and no
 * result, that imports its memory as `env.memory` (tfjs's heap) and whose
 * body (locals, then code) is `code`.
 */
const moduleOf = (fn: string, params: readonly number[], code: readonly number[]): Uint8Array =>
  Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, params.length, ...params, 0]),
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 1]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name(fn), 0x00, 0]),
    ...section(10, [1, ...uleb(code.length), ...code]),
  ]);
const MODULE = moduleOf('sums', Array(9).fill(I32), code);

// --- A second function, in a module of its own (it needs WebAssembly's SIMD,
// and sums must not depend on that): `colsum(x, out, end, stride, groups)`,
// all in bytes: for each group of four columns c below `groups`,
// out[c … c + 3] = Σ over rows (r from 0 below `end`, step `stride`) of
// x[r + c … r + c + 3], four float32 accumulators added row after row, in
// row order: the floats tfjs's wasm Sum gives over the leading axes (its
// transpose, then a sequential sum per column), without the transpose.
const V128 = 0x7b;
const SIMD = 0xfd;
const [V128_LOAD, V128_STORE, V128_CONST] = [0x00, 0x0b, 0x0c];
const F32X4_ADD = [0xe4, 0x01];
const I32_ADD = ADD;
// Parameters 0–4 as above; locals: 5 c, 6 r, 7 the accumulators.
const [CX, COUT, CEND, CSTRIDE, CGROUPS, CC, CR, CACC] = [0, 1, 2, 3, 4, 5, 6, 7];
const colsumBody = [
  BLOCK, VOID, LOOP, VOID,
  GET, CC, GET, CGROUPS, GE_S, BR_IF, 1,
  SIMD, V128_CONST, ...Array(16).fill(0), SET, CACC,
  ...int(0), SET, CR,
  BLOCK, VOID, LOOP, VOID,
  GET, CR, GET, CEND, GE_S, BR_IF, 1,
  GET, CACC,
  GET, CX, GET, CR, I32_ADD, GET, CC, I32_ADD, SIMD, V128_LOAD, 2, 0,
  SIMD, ...F32X4_ADD, SET, CACC,
  GET, CR, GET, CSTRIDE, I32_ADD, SET, CR,
  BR, 0, END, END,
  GET, COUT, GET, CC, I32_ADD, GET, CACC, SIMD, V128_STORE, 2, 0,
  GET, CC, ...int(16), I32_ADD, SET, CC,
  BR, 0, END, END, END,
];
const colsumCode = [2, 2, I32, 1, V128, ...colsumBody];
const COLSUM_MODULE = moduleOf('colsum', Array(5).fill(I32), colsumCode);

// --- A third, beside it (SIMD too): `adam(g, m, v, u, m2, v2, bytes, b1, r1, b2, r2, c1, c2, eps)`,
// addresses and a length in bytes (a multiple of 16), then seven float32
// scalars: four entries at a time, m2 = m·b1 + g·r1, v2 = v·b2 + (g·g)·r2,
// u = (m2 / c1) / (√(v2 / c2) + eps). Each lane's operations are IEEE
// float32, rounded as tfjs's kernels round the same ops (kernels.ts adamStep).
const F32 = 0x7d;
const [F32X4_SPLAT, F32X4_SQRT, F32X4_MUL, F32X4_DIV] = [[0x13], [0xe3, 0x01], [0xe6, 0x01], [0xe7, 0x01]];
// Parameters: 0 g, 1 m, 2 v, 3 u, 4 m2, 5 v2, 6 bytes, 7–13 the scalars; locals: 14 i, 15–21 the scalars splatted, 22 g's lanes, 23 m2's, 24 v2's.
const [AG, AM, AV, AU, AM2, AV2, ABYTES, AI, AK, AX, AMM, AVV] = [0, 1, 2, 3, 4, 5, 6, 14, 15, 22, 23, 24];
const simd = (op: number[]) => [SIMD, ...op];
const lanes = (k: number) => [GET, AK + k]; // b1, r1, b2, r2, c1, c2, eps as 0 … 6
const at = (base: number) => [GET, base, GET, AI, I32_ADD];
const adamBody = [
  ...Array.from({ length: 7 }, (_, k) => [GET, 7 + k, ...simd(F32X4_SPLAT), SET, AK + k]).flat(),
  BLOCK, VOID, LOOP, VOID,
  GET, AI, GET, ABYTES, GE_S, BR_IF, 1,
  ...at(AG), SIMD, V128_LOAD, 2, 0, SET, AX,
  ...at(AM), SIMD, V128_LOAD, 2, 0, ...lanes(0), ...simd(F32X4_MUL), GET, AX, ...lanes(1), ...simd(F32X4_MUL), SIMD, ...F32X4_ADD, SET, AMM,
  ...at(AV), SIMD, V128_LOAD, 2, 0, ...lanes(2), ...simd(F32X4_MUL), GET, AX, GET, AX, ...simd(F32X4_MUL), ...lanes(3), ...simd(F32X4_MUL), SIMD, ...F32X4_ADD, SET, AVV,
  ...at(AM2), GET, AMM, SIMD, V128_STORE, 2, 0,
  ...at(AV2), GET, AVV, SIMD, V128_STORE, 2, 0,
  ...at(AU), GET, AMM, ...lanes(4), ...simd(F32X4_DIV), GET, AVV, ...lanes(5), ...simd(F32X4_DIV), ...simd(F32X4_SQRT), ...lanes(6), SIMD, ...F32X4_ADD, ...simd(F32X4_DIV), SIMD, V128_STORE, 2, 0,
  GET, AI, ...int(16), I32_ADD, SET, AI,
  BR, 0, END, END, END,
];
const adamCode = [2, 1, I32, 10, V128, ...adamBody];
const ADAM_MODULE = moduleOf('adam', [...Array(7).fill(I32), ...Array(7).fill(F32)], adamCode);

// --- A fourth (SIMD): `bmm(a, b, c, batch, m, k, groupBytes, rowBytes, aBatch, aRow, aCol, bBatch, bRow)`,
// addresses and strides in bytes: for each product p below `batch` and row i
// below m, c's next row (c is written straight on) = Σ over t below k of
// a[p·aBatch + i·aRow + t·aCol]·b[p·bBatch + t·bRow + …]: four columns at a
// time up to `groupBytes`, then one at a time up to `rowBytes` (4n), each
// sum in t's order. tfjs's wasm BatchMatMul runs a product with more than
// one matrix in a scalar loop (the attention's 17×16 products reach about
// 1 GFLOP/s there); a's strides make its transpose free.
const [F32_LOAD, F32_STORE, F32_MUL, F32_ADD, F32_CONST] = [0x2a, 0x38, 0x94, 0x92, 0x43];
// Parameters 0–12 as above; locals: 13 p, 14 i, 15 j (bytes), 16 t, 17 a's address, 18 b's, 19 row i's start in a, 20 c's, 21 a product's a, 22 its b, 23 the four sums, 24 the one.
const [BA, BB, BC, BN, BM, BK, BGROUP, BROW, BAB, BAR, BAC, BBB, BBR] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
const [BP, BI, BJ, BT, BAK, BBK, BAI, BCP, BAP, BBP, BACC, BS] = [13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24];
const loop = (until: number[], body: number[]) => [BLOCK, VOID, LOOP, VOID, ...until, BR_IF, 1, ...body, BR, 0, END, END];
const step = (local: number, by: number[]) => [GET, local, ...by, I32_ADD, SET, local];
/** Σ over t of a[t]·b[t, j…]: `mul`, `add` and `load` of one lane or four; the sum is left on the stack. */
const dot = (zero: number[], acc: number, loadB: number[], mul: number[], add: number[], splat: number[]) => [
  ...zero, SET, acc,
  GET, BAI, SET, BAK,
  GET, BBP, GET, BJ, I32_ADD, SET, BBK,
  ...int(0), SET, BT,
  ...loop([GET, BT, GET, BK, GE_S], [
    GET, acc,
    GET, BAK, F32_LOAD, 2, 0, ...splat,
    GET, BBK, ...loadB,
    ...mul, ...add, SET, acc,
    ...step(BAK, [GET, BAC]), ...step(BBK, [GET, BBR]), ...step(BT, int(1)),
  ]),
  GET, acc,
];
const bmmBody = [
  GET, BC, SET, BCP,
  GET, BA, SET, BAP,
  GET, BB, SET, BBP,
  ...loop([GET, BP, GET, BN, GE_S], [
    GET, BAP, SET, BAI,
    ...int(0), SET, BI,
    ...loop([GET, BI, GET, BM, GE_S], [
      ...int(0), SET, BJ,
      ...loop([GET, BJ, GET, BGROUP, GE_S], [
        GET, BCP, ...dot([SIMD, V128_CONST, ...Array(16).fill(0)], BACC, [SIMD, V128_LOAD, 2, 0], simd(F32X4_MUL), [SIMD, ...F32X4_ADD], simd(F32X4_SPLAT)), SIMD, V128_STORE, 2, 0,
        ...step(BCP, int(16)), ...step(BJ, int(16)),
      ]),
      ...loop([GET, BJ, GET, BROW, GE_S], [
        GET, BCP, ...dot([F32_CONST, 0, 0, 0, 0], BS, [F32_LOAD, 2, 0], [F32_MUL], [F32_ADD], []), F32_STORE, 2, 0,
        ...step(BCP, int(4)), ...step(BJ, int(4)),
      ]),
      ...step(BAI, [GET, BAR]), ...step(BI, int(1)),
    ]),
    ...step(BAP, [GET, BAB]), ...step(BBP, [GET, BBB]), ...step(BP, int(1)),
  ]),
  END,
];
const bmmCode = [3, 10, I32, 1, V128, 1, F32, ...bmmBody];
const BMM_MODULE = moduleOf('bmm', Array(13).fill(I32), bmmCode);

// --- A fifth (SIMD): `copy3(src, dst, n1, n2, n3, s1, s2, s3, d1, d2, d3, groupBytes, runBytes)`,
// addresses, strides and lengths in bytes: for each (i, j, k) below (n1, n2,
// n3), the run of `runBytes` at src + i·s1 + j·s2 + k·s3 to dst + i·d1 +
// j·d2 + k·d3, sixteen bytes at a time up to `groupBytes`, then four (bits
// copied, never converted). The attention's heads are such runs (kernels.ts
// moveHeads): JavaScript moves them at 3–5 ns a float.
const [LOAD_V, STORE_V, I32_LOAD, I32_STORE] = [[SIMD, V128_LOAD, 2, 0], [SIMD, V128_STORE, 2, 0], [LOAD_I32, 2, 0], [0x36, 2, 0]];
// Parameters 0–12 as above; locals: 13–15 i, j, k, 16 the run's offset, 17–18 src and dst at (i, 0, 0), 19–20 at (i, j, 0), 21–22 at (i, j, k).
const [CS, CD, CN1, CN2, CN3, CS1, CS2, CS3, CD1, CD2, CD3, CGROUP, CRUN] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
const [CI, CJ, CK, CO, CSI, CDI, CSJ, CDJ, CSK, CDK] = [13, 14, 15, 16, 17, 18, 19, 20, 21, 22];
const copyBody = [
  GET, CS, SET, CSI, GET, CD, SET, CDI,
  ...loop([GET, CI, GET, CN1, GE_S], [
    GET, CSI, SET, CSJ, GET, CDI, SET, CDJ, ...int(0), SET, CJ,
    ...loop([GET, CJ, GET, CN2, GE_S], [
      GET, CSJ, SET, CSK, GET, CDJ, SET, CDK, ...int(0), SET, CK,
      ...loop([GET, CK, GET, CN3, GE_S], [
        ...int(0), SET, CO,
        ...loop([GET, CO, GET, CGROUP, GE_S], [GET, CDK, GET, CO, I32_ADD, GET, CSK, GET, CO, I32_ADD, ...LOAD_V, ...STORE_V, ...step(CO, int(16))]),
        ...loop([GET, CO, GET, CRUN, GE_S], [GET, CDK, GET, CO, I32_ADD, GET, CSK, GET, CO, I32_ADD, ...I32_LOAD, ...I32_STORE, ...step(CO, int(4))]),
        ...step(CSK, [GET, CS3]), ...step(CDK, [GET, CD3]), ...step(CK, int(1)),
      ]),
      ...step(CSJ, [GET, CS2]), ...step(CDJ, [GET, CD2]), ...step(CJ, int(1)),
    ]),
    ...step(CSI, [GET, CS1]), ...step(CDI, [GET, CD1]), ...step(CI, int(1)),
  ]),
  END,
];
const COPY_MODULE = moduleOf('copy3', Array(13).fill(I32), [1, 10, I32, ...copyBody]);

// --- Layer norm over rows of d entries (d a multiple of 4), SIMD, two
// functions in one module. `lnf(x, gamma, beta, y, xhat, rstd, rows, dBytes, invD, eps)`:
// per row, μ = Σx·invD, σ² = Σ(x − μ)²·invD (each sum four lanes, then the
// lanes in order), r = 1/√(σ² + eps), x̂ = (x − μ)·r, y = x̂·γ + β; writes
// y, x̂ and r. `lnb(dy, gamma, xhat, rstd, dx, dgamma, dbeta, rows, dBytes, invD)`:
// per row, g = dy·γ, m₁ = Σg·invD, m₂ = Σg·x̂·invD, dx = r·((g − m₁) − x̂·m₂),
// and dγ += dy·x̂, dβ += dy (row after row, into the caller's zeros).
const [F32_SQRT, F32_DIV] = [0x91, 0x95];
const F32X4_SUB = [0xe5, 0x01];
const EXTRACT = 0x1f;
const vload = (addr: number[]) => [...addr, SIMD, V128_LOAD, 2, 0];
/** The four lanes of a v128 local, added in lane order, as an f32 on the stack. */
const lanesSum = (v: number) => [GET, v, SIMD, EXTRACT, 0, GET, v, SIMD, EXTRACT, 1, F32_ADD, GET, v, SIMD, EXTRACT, 2, F32_ADD, GET, v, SIMD, EXTRACT, 3, F32_ADD];
const zero4 = [SIMD, V128_CONST, ...Array(16).fill(0)];
const vadd = [SIMD, ...F32X4_ADD];
const vsub = [SIMD, ...F32X4_SUB];
const vmul = simd(F32X4_MUL);
const splat = simd(F32X4_SPLAT);
// lnf: parameters 0 x, 1 gamma, 2 beta, 3 y, 4 xhat, 5 rstd, 6 rows, 7 dBytes, 8 invD, 9 eps;
// locals: 10 r, 11 i, 12 row offset (bytes), 13 acc, 14 μ splatted, 15 r splatted, 16 x̂ lanes, 17 the row's r (f32).
const [FX, FG, FB, FY, FH, FR, FROWS, FD, FINV, FEPS, FRI, FI, FO, FACC, FMU, FRS, FXH, FRV] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
const rowLoop = (rowsP: number, ri: number, off: number, dP: number, body: number[]) =>
  loop([GET, ri, GET, rowsP, GE_S], [...body, ...step(off, [GET, dP]), ...step(ri, int(1))]);
const colLoop = (i: number, dP: number, body: number[]) => [...int(0), SET, i, ...loop([GET, i, GET, dP, GE_S], [...body, ...step(i, int(16))])];
const at2 = (base: number, off: number, i: number) => [GET, base, GET, off, I32_ADD, GET, i, I32_ADD];
const lnfBody = [
  ...rowLoop(FROWS, FRI, FO, FD, [
    ...zero4, SET, FACC,
    ...colLoop(FI, FD, [GET, FACC, ...vload(at2(FX, FO, FI)), ...vadd, SET, FACC]),
    ...lanesSum(FACC), GET, FINV, F32_MUL, ...splat, SET, FMU,
    ...zero4, SET, FACC,
    ...colLoop(FI, FD, [...vload(at2(FX, FO, FI)), GET, FMU, ...vsub, SET, FXH, GET, FACC, GET, FXH, GET, FXH, ...vmul, ...vadd, SET, FACC]),
    F32_CONST, 0, 0, 0x80, 0x3f, ...lanesSum(FACC), GET, FINV, F32_MUL, GET, FEPS, F32_ADD, F32_SQRT, F32_DIV, SET, FRV,
    GET, FR, GET, FRI, ...int(2), 0x74, I32_ADD, GET, FRV, F32_STORE, 2, 0,
    GET, FRV, ...splat, SET, FRS,
    ...colLoop(FI, FD, [
      ...vload(at2(FX, FO, FI)), GET, FMU, ...vsub, GET, FRS, ...vmul, SET, FXH,
      ...at2(FH, FO, FI), GET, FXH, SIMD, V128_STORE, 2, 0,
      ...at2(FY, FO, FI), GET, FXH, ...vload([GET, FG, GET, FI, I32_ADD]), ...vmul, ...vload([GET, FB, GET, FI, I32_ADD]), ...vadd, SIMD, V128_STORE, 2, 0,
    ]),
  ]),
  END,
];
// lnb: parameters 0 dy, 1 gamma, 2 xhat, 3 rstd, 4 dx, 5 dgamma, 6 dbeta, 7 rows, 8 dBytes, 9 invD;
// locals: 10 r, 11 i, 12 row offset, 13 Σg lanes, 14 Σg·x̂ lanes, 15 dy lanes, 16 g lanes, 17 x̂ lanes, 18 m₁ splatted, 19 m₂ splatted, 20 r splatted.
const [BDY, BG, BH, BRST, BDX, BDG, BDB, BROWS, BD, BINV, BRI, BII, BO, BA1, BA2, BV, BGV, BXV, BM1, BM2, BRS] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
const lnbBody = [
  ...rowLoop(BROWS, BRI, BO, BD, [
    ...zero4, SET, BA1, ...zero4, SET, BA2,
    ...colLoop(BII, BD, [
      ...vload(at2(BDY, BO, BII)), SET, BV,
      ...vload(at2(BH, BO, BII)), SET, BXV,
      GET, BV, ...vload([GET, BG, GET, BII, I32_ADD]), ...vmul, SET, BGV,
      GET, BA1, GET, BGV, ...vadd, SET, BA1,
      GET, BA2, GET, BGV, GET, BXV, ...vmul, ...vadd, SET, BA2,
      GET, BDG, GET, BII, I32_ADD, ...vload([GET, BDG, GET, BII, I32_ADD]), GET, BV, GET, BXV, ...vmul, ...vadd, SIMD, V128_STORE, 2, 0,
      GET, BDB, GET, BII, I32_ADD, ...vload([GET, BDB, GET, BII, I32_ADD]), GET, BV, ...vadd, SIMD, V128_STORE, 2, 0,
    ]),
    ...lanesSum(BA1), GET, BINV, F32_MUL, ...splat, SET, BM1,
    ...lanesSum(BA2), GET, BINV, F32_MUL, ...splat, SET, BM2,
    GET, BRST, GET, BRI, ...int(2), 0x74, I32_ADD, F32_LOAD, 2, 0, ...splat, SET, BRS,
    ...colLoop(BII, BD, [
      ...at2(BDX, BO, BII),
      GET, BRS,
      ...vload(at2(BDY, BO, BII)), ...vload([GET, BG, GET, BII, I32_ADD]), ...vmul, GET, BM1, ...vsub,
      ...vload(at2(BH, BO, BII)), GET, BM2, ...vmul, ...vsub,
      ...vmul, SIMD, V128_STORE, 2, 0,
    ]),
  ]),
  END,
];
const LN_MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [2, 0x60, 10, ...Array(8).fill(I32), F32, F32, 0, 0x60, 10, ...Array(9).fill(I32), F32, 0]),
  ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 1]),
  ...section(3, [2, 0, 1]),
  ...section(7, [2, ...name('lnf'), 0x00, 0, ...name('lnb'), 0x00, 1]),
  ...section(10, [2, ...((c: number[]) => [...uleb(c.length), ...c])([3, 3, I32, 4, V128, 1, F32, ...lnfBody]), ...((c: number[]) => [...uleb(c.length), ...c])([2, 3, I32, 8, V128, ...lnbBody])]),
]);
// ---

type Sums = (a: number, g: number, rows: number, cols: number, countBytes: number, rowsInBlocks: number, origins: number, strideG: number, out: number) => void;
// The few WebAssembly globals used, typed here: the library compiles against
// ES2023 and Node's types only, which do not declare them.
interface Memory {
  readonly buffer: ArrayBuffer;
}
interface WebAssemblyApi {
  Memory: abstract new (...args: never[]) => Memory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const WebAssemblyApi = (globalThis as unknown as { WebAssembly?: WebAssemblyApi }).WebAssembly;

/** What this file needs of the wasm backend (tfjs-backend-wasm 4.22): its heap, allocator and where each tensor lives. */
interface WasmBackend {
  wasm: { asm?: { memory?: Memory }; _malloc(bytes: number): number; _free(ptr: number): void };
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number } | undefined };
}

/** Whether {@link entrySums} runs in WebAssembly on `backend` (tfjs's wasm backend, whose heap it reaches). */
export function sumsInWasm(backend: tf.KernelBackend = tf.backend()): boolean {
  return sumsOn(backend) !== null;
}

/** The sums function on `backend`'s heap, or null where that heap cannot be reached (cpu, or another wasm build). */
function sumsOn(backend: tf.KernelBackend): Sums | null {
  return linked(MODULE, 'sums', backend);
}

/**
 * `name` from `bytes` linked to `backend`'s heap (one instance per module and backend), or null
 * where it cannot link: a shared heap (the threaded build, on a
 * cross-origin-isolated page) does not match the import, an engine without
 * SIMD rejects the SIMD modules, cpu has no heap. Callers fall back.
 */
function linked<F>(bytes: Uint8Array, name: string, backend: tf.KernelBackend): F | null {
  let perBackend = instancesOf.get(bytes);
  if (!perBackend) instancesOf.set(bytes, (perBackend = new WeakMap()));
  let exports = perBackend.get(backend);
  if (exports === undefined) {
    const memory = (backend as unknown as Partial<WasmBackend>).wasm?.asm?.memory;
    exports = null;
    try {
      const wa = WebAssemblyApi;
      if (wa && memory instanceof wa.Memory) exports = new wa.Instance(new wa.Module(bytes), { env: { memory } }).exports;
    } catch {
      // Not linkable here: null, and the caller's fallback.
    }
    perBackend.set(backend, exports);
  }
  return exports ? ((exports[name] as F | undefined) ?? null) : null;
}
/** Each module's instance (its exports) per backend, or null where it cannot link: one instance per module and backend. */
const instancesOf = new Map<Uint8Array, WeakMap<object, Record<string, unknown> | null>>();

/**
 * Σ over rows r of a[origins[r] + rows[q]]·g[r·n + cols[q]] for each entry
 * q, accumulated in float64, for float32 `a` and row-major `g` `[R, n]`
 * (R = `origins.length`): a matrix `a` `[R, K]` has origins r·K, a
 * convolution's padded input the corner of each output position's window.
 * `wasm: false` runs it in JavaScript only (for tests).
 */
export function entrySums(a: tf.TensorInfo, g: tf.TensorInfo, origins: Int32Array, n: number, rows: Int32Array, cols: Int32Array, backend: tf.KernelBackend = tf.backend(), wasm = true): Float64Array {
  const r = origins.length;
  const count = rows.length;
  const acc = new Float64Array(count);
  let done = 0;
  const sums = wasm ? sumsOn(backend) : null;
  if (sums && count > 0 && r >= BLOCK_ROWS) {
    const be = backend as unknown as WasmBackend;
    const ao = be.dataIdMap.get(a.dataId)?.memoryOffset;
    const go = be.dataIdMap.get(g.dataId)?.memoryOffset;
    if (ao !== undefined && go !== undefined) {
      done = r - (r % BLOCK_ROWS);
      // Scratch on tfjs's heap: the accumulators (8-aligned from malloc), then the byte offsets.
      // (malloc's pointer is a signed int32, negative past 2 GiB of heap, as tfjs's own `move` knows; 0 when out of memory.)
      const ptr = be.wasm._malloc(16 * count + 4 * r) >>> 0;
      if (ptr === 0) throw new RangeError(`entrySums: wasm's heap has no room for ${16 * count + 4 * r} bytes of scratch`);
      try {
        const heap = be.wasm.asm!.memory!.buffer;
        new Float64Array(heap, ptr, count).fill(0);
        const ri = new Int32Array(heap, ptr + 8 * count, count);
        const ci = new Int32Array(heap, ptr + 12 * count, count);
        const oi = new Int32Array(heap, ptr + 16 * count, r);
        for (let q = 0; q < count; q++) {
          ri[q] = 4 * rows[q]!;
          ci[q] = 4 * cols[q]!;
        }
        for (let t = 0; t < r; t++) oi[t] = 4 * origins[t]!;
        sums(ao, go, ptr + 8 * count, ptr + 12 * count, 4 * count, 4 * done, ptr + 16 * count, 4 * n, ptr);
        acc.set(new Float64Array(be.wasm.asm!.memory!.buffer, ptr, count));
      } finally {
        be.wasm._free(ptr);
      }
    }
  }
  // The rest (every row without the function), in JavaScript: eight rows at
  // a time, so each accumulator is read and written once per eight products.
  const av = hostView(a, backend);
  const gv = hostView(g, backend);
  let row = done;
  for (; row + 8 <= r; row += 8) {
    const [x0, x1, x2, x3] = [origins[row]!, origins[row + 1]!, origins[row + 2]!, origins[row + 3]!];
    const [x4, x5, x6, x7] = [origins[row + 4]!, origins[row + 5]!, origins[row + 6]!, origins[row + 7]!];
    const d = row * n;
    for (let q = 0; q < count; q++) {
      const i = rows[q]!;
      const j = d + cols[q]!;
      acc[q]! +=
        av[x0 + i]! * gv[j]! + av[x1 + i]! * gv[j + n]! + av[x2 + i]! * gv[j + 2 * n]! + av[x3 + i]! * gv[j + 3 * n]! +
        av[x4 + i]! * gv[j + 4 * n]! + av[x5 + i]! * gv[j + 5 * n]! + av[x6 + i]! * gv[j + 6 * n]! + av[x7 + i]! * gv[j + 7 * n]!;
    }
  }
  for (; row < r; row++) {
    const x0 = origins[row]!;
    const d = row * n;
    for (let q = 0; q < count; q++) acc[q]! += av[x0 + rows[q]!]! * gv[d + cols[q]!]!;
  }
  return acc;
}

/** The origins of the rows of a matrix `[r, k]`: 0, k, 2k, … */
export function matrixOrigins(r: number, k: number): Int32Array {
  // A loop, not Int32Array.from with a callback: this runs for every sparse leaf of every step.
  const o = new Int32Array(r);
  for (let t = 0; t < r; t++) o[t] = t * k;
  return o;
}

/**
 * A float32 tensor's own memory, without a copy: a view of wasm's heap, or
 * cpu's values array. Read through it, or write a fresh tensor's (only its
 * maker holds it) to correct it in place. Take the views after the last
 * allocation (a new tensor may grow wasm's heap and detach an older view)
 * and use them at once.
 */
export function hostView(t: tf.TensorInfo, backend: tf.KernelBackend = tf.backend()): Float32Array {
  const b = backend as tf.KernelBackend & { typedArrayFromHeap?: (t: tf.TensorInfo) => Float32Array };
  return b.typedArrayFromHeap ? b.typedArrayFromHeap(t) : (b.readSync(t.dataId) as Float32Array);
}

type Colsum = (x: number, out: number, end: number, stride: number, groups: number) => void;

/** The column-sum function on `backend`'s heap, or null (cpu, a shared heap, no SIMD). */
function colsumOn(backend: tf.KernelBackend): Colsum | null {
  return linked(COLSUM_MODULE, 'colsum', backend);
}

/** Whether {@link columnSumsInto} runs on `backend` (tfjs's wasm backend with SIMD, whose heap it reaches). */
export function columnSumsInWasm(backend: tf.KernelBackend = tf.backend()): boolean {
  return colsumOn(backend) !== null;
}

/**
 * Σ over the rows of a float32 `x` seen as `[R, C]` (every leading axis
 * flattened into R), into `out` (length C), in WebAssembly on wasm's heap:
 * the floats tfjs's wasm `Sum` over the leading axes gives, without its
 * transpose. Returns false (and writes nothing) where that cannot run
 * (cpu, a shared heap, no SIMD): use `tf.sum` there.
 */
export function columnSumsInto(x: tf.TensorInfo, out: Float32Array, backend: tf.KernelBackend = tf.backend()): boolean {
  const colsum = colsumOn(backend);
  const be = backend as unknown as WasmBackend;
  const xo = colsum ? be.dataIdMap.get(x.dataId)?.memoryOffset : undefined;
  if (!colsum || xo === undefined) return false;
  const c = out.length;
  const rows = c === 0 ? 0 : x.shape.reduce((a, b) => a * b, 1) / c;
  const groups = c - (c % 4);
  // The four-column groups in WebAssembly, into scratch on the heap; the last c % 4 columns here, in the same order.
  const ptr = groups === 0 ? 0 : be.wasm._malloc(4 * groups) >>> 0;
  if (groups > 0 && ptr === 0) throw new RangeError(`columnSums: wasm's heap has no room for ${4 * groups} bytes of scratch`);
  try {
    if (groups > 0) {
      colsum(xo, ptr, 4 * c * rows, 4 * c, 4 * groups);
      out.set(new Float32Array(be.wasm.asm!.memory!.buffer, ptr, groups));
    }
    const xv = hostView(x, backend);
    for (let j = groups; j < c; j++) {
      let s = 0;
      for (let r = 0, at = j; r < rows; r++, at += c) s = Math.fround(s + xv[at]!);
      out[j] = s;
    }
  } finally {
    if (ptr !== 0) be.wasm._free(ptr);
  }
  return true;
}

type Adam = (g: number, m: number, v: number, u: number, m2: number, v2: number, bytes: number, b1: number, r1: number, b2: number, r2: number, c1: number, c2: number, eps: number) => void;

/** The Adam function on `backend`'s heap, or null (cpu, a shared heap, no SIMD). */
function adamOn(backend: tf.KernelBackend): Adam | null {
  return linked(ADAM_MODULE, 'adam', backend);
}

/** Whether {@link adamInWasm} runs on `backend`. */
export function adamRunsOn(backend: tf.KernelBackend = tf.backend()): boolean {
  return adamOn(backend) !== null;
}

/**
 * One Adam step over float32 `g`, `m`, `v` (one length) into `u`, `m2`,
 * `v2` of the same length, in WebAssembly SIMD on wasm's heap, for the
 * entries up to the last multiple of four; returns how many it did (0 where
 * it cannot run: cpu, a shared heap, no SIMD). The scalars are float32
 * already (kernels.ts adamStep), `r1 = 1 − b1`, `r2 = 1 − b2`.
 */
export function adamInWasm(t: { readonly g: tf.TensorInfo; readonly m: tf.TensorInfo; readonly v: tf.TensorInfo; readonly u: tf.TensorInfo; readonly m2: tf.TensorInfo; readonly v2: tf.TensorInfo }, s: readonly [b1: number, r1: number, b2: number, r2: number, c1: number, c2: number, eps: number], backend: tf.KernelBackend = tf.backend()): number {
  const adam = adamOn(backend);
  if (!adam) return 0;
  const be = backend as unknown as WasmBackend;
  const o = [t.g, t.m, t.v, t.u, t.m2, t.v2].map((x) => be.dataIdMap.get(x.dataId)?.memoryOffset);
  if (o.some((x) => x === undefined)) return 0;
  const n = t.g.shape.reduce((a, b) => a * b, 1);
  const done = n - (n % 4);
  const [g, m, v, u, m2, v2] = o as [number, number, number, number, number, number];
  adam(g, m, v, u, m2, v2, 4 * done, ...s);
  return done;
}

type Bmm = (a: number, b: number, c: number, batch: number, m: number, k: number, groupBytes: number, rowBytes: number, aBatch: number, aRow: number, aCol: number, bBatch: number, bRow: number) => void;

/** The batched-matmul function on `backend`'s heap, or null (cpu, a shared heap, no SIMD). */
function bmmOn(backend: tf.KernelBackend): Bmm | null {
  return linked(BMM_MODULE, 'bmm', backend);
}

/** Whether {@link batchMatMulInto} runs on `backend`. */
export function batchMatMulRunsOn(backend: tf.KernelBackend = tf.backend()): boolean {
  return bmmOn(backend) !== null;
}

/**
 * `out[p] = a[p]·b[p]` (or `a[p]ᵀ·b[p]` with `transposeA`) for float32
 * `a` `[batch, m, k]` (`[batch, k, m]` transposed), `b` `[batch, k, n]`
 * and `out` `[batch, m, n]`, in WebAssembly SIMD on wasm's heap: each
 * entry a sum in k's order. Returns false (and writes nothing) where that
 * cannot run (cpu, a shared heap, no SIMD).
 */
export function batchMatMulInto(a: tf.TensorInfo, b: tf.TensorInfo, out: tf.TensorInfo, transposeA: boolean, backend: tf.KernelBackend = tf.backend()): boolean {
  const bmm = bmmOn(backend);
  const be = backend as unknown as WasmBackend;
  const [ao, bo, co] = [a, b, out].map((t) => (bmm ? be.dataIdMap.get(t.dataId)?.memoryOffset : undefined));
  if (!bmm || ao === undefined || bo === undefined || co === undefined) return false;
  // Leading axes flattened: a [batch, m, k] (or [batch, k, m]), b [batch, k, n], out [batch, m, n].
  const r = b.shape.length;
  const [k, n, m] = [b.shape[r - 2]!, b.shape[r - 1]!, out.shape[r - 2]!];
  const batch = b.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const [aRow, aCol] = transposeA ? [4, 4 * m] : [4 * k, 4];
  bmm(ao, bo, co, batch, m, k, 4 * (n - (n % 4)), 4 * n, 4 * m * k, aRow, aCol, 4 * k * n, 4 * n);
  return true;
}

type Copy3 = (src: number, dst: number, n1: number, n2: number, n3: number, s1: number, s2: number, s3: number, d1: number, d2: number, d3: number, groupBytes: number, runBytes: number) => void;

/** The run-copying function on `backend`'s heap, or null (cpu, a shared heap, no SIMD). */
function copyOn(backend: tf.KernelBackend): Copy3 | null {
  return linked(COPY_MODULE, 'copy3', backend);
}

/** Whether {@link copyRunsInto} runs on `backend`. */
export function copyRunsOn(backend: tf.KernelBackend = tf.backend()): boolean {
  return copyOn(backend) !== null;
}

/**
 * For each (i, j, k) below `n`, copies `run` float32 entries of `src`
 * from entry `from + i·s[0] + j·s[1] + k·s[2]` to `dst` at `to + i·d[0] +
 * j·d[1] + k·d[2]` (offsets and strides in entries), in WebAssembly on
 * wasm's heap, bits unchanged. Returns false (and copies nothing) where
 * that cannot run (cpu, a shared heap, no SIMD).
 */
export function copyRunsInto(src: tf.TensorInfo, from: number, dst: tf.TensorInfo, to: number, n: readonly [number, number, number], s: readonly [number, number, number], d: readonly [number, number, number], run: number, backend: tf.KernelBackend = tf.backend()): boolean {
  const copy = copyOn(backend);
  const be = backend as unknown as WasmBackend;
  const [so, dO] = [src, dst].map((t) => (copy ? be.dataIdMap.get(t.dataId)?.memoryOffset : undefined));
  if (!copy || so === undefined || dO === undefined) return false;
  copy(so + 4 * from, dO + 4 * to, ...n, 4 * s[0], 4 * s[1], 4 * s[2], 4 * d[0], 4 * d[1], 4 * d[2], 16 * Math.floor(run / 4), 4 * run);
  return true;
}

type Lnf = (x: number, gamma: number, beta: number, y: number, xhat: number, rstd: number, rows: number, dBytes: number, invD: number, eps: number) => void;
type Lnb = (dy: number, gamma: number, xhat: number, rstd: number, dx: number, dgamma: number, dbeta: number, rows: number, dBytes: number, invD: number) => void;
/** The layer-norm functions on `backend`'s heap, both from the module's one instance, or null (cpu, a shared heap, no SIMD). */
function lnOn(backend: tf.KernelBackend): { lnf: Lnf; lnb: Lnb } | null {
  const lnf = linked<Lnf>(LN_MODULE, 'lnf', backend);
  const lnb = linked<Lnb>(LN_MODULE, 'lnb', backend);
  return lnf && lnb ? { lnf, lnb } : null;
}

/** Whether {@link layerNormInto} and {@link layerNormGradInto} run on `backend` (wasm with SIMD, whose heap they reach). */
export function layerNormRunsOn(backend: tf.KernelBackend = tf.backend()): boolean {
  return lnOn(backend) !== null;
}

const offsets = (backend: tf.KernelBackend, ts: readonly tf.TensorInfo[]) => ts.map((t) => (backend as unknown as WasmBackend).dataIdMap.get(t.dataId)?.memoryOffset);

/**
 * Layer norm of float32 `x` `[rows, d]` (d a multiple of 4) over its rows,
 * into `y`, `xhat` (same shape) and `rstd` `[rows]`, in WebAssembly SIMD on
 * wasm's heap (see LN_MODULE for the order of each sum). Returns false
 * (and writes nothing) where that cannot run.
 */
export function layerNormInto(t: { readonly x: tf.TensorInfo; readonly gamma: tf.TensorInfo; readonly beta: tf.TensorInfo; readonly y: tf.TensorInfo; readonly xhat: tf.TensorInfo; readonly rstd: tf.TensorInfo }, eps: number, backend: tf.KernelBackend = tf.backend()): boolean {
  const ln = lnOn(backend);
  const o = ln ? offsets(backend, [t.x, t.gamma, t.beta, t.y, t.xhat, t.rstd]) : [];
  if (!ln || o.some((x) => x === undefined)) return false;
  const d = t.gamma.shape[0]!;
  const rows = t.rstd.shape.reduce((a, b) => a * b, 1);
  ln.lnf(...(o as [number, number, number, number, number, number]), rows, 4 * d, Math.fround(1 / d), Math.fround(eps));
  return true;
}

/**
 * Layer norm's gradients from `dy`, `gamma`, and the forward pass's `xhat`
 * and `rstd`: `dx` (as `dy`), and `dgamma`, `dbeta` `[d]`, which must hold
 * zeros (the rows are added into them, row after row), in WebAssembly SIMD
 * on wasm's heap. Returns false (and writes nothing) where that cannot run.
 */
export function layerNormGradInto(t: { readonly dy: tf.TensorInfo; readonly gamma: tf.TensorInfo; readonly xhat: tf.TensorInfo; readonly rstd: tf.TensorInfo; readonly dx: tf.TensorInfo; readonly dgamma: tf.TensorInfo; readonly dbeta: tf.TensorInfo }, backend: tf.KernelBackend = tf.backend()): boolean {
  const ln = lnOn(backend);
  const o = ln ? offsets(backend, [t.dy, t.gamma, t.xhat, t.rstd, t.dx, t.dgamma, t.dbeta]) : [];
  if (!ln || o.some((x) => x === undefined)) return false;
  const d = t.gamma.shape[0]!;
  const rows = t.rstd.shape.reduce((a, b) => a * b, 1);
  ln.lnb(...(o as [number, number, number, number, number, number, number]), rows, 4 * d, Math.fround(1 / d));
  return true;
}
