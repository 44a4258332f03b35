// Type-checks the package's own declarations, every entry, as a TypeScript user sees them.
import { initBackend, gps, select, selectionEnv, webWorkerPool, type Mask, type Model, type WebWorkerPoolOptions, type WorkerPool } from 'sparsetune';
import { digits, loadBackbone, type TaskName } from 'sparsetune/node';
import { checkLaws, maskAlgebraLaws, specArb } from 'sparsetune/testing';

export async function main(): Promise<Mask> {
  await initBackend('cpu');
  const { model, params } = loadBackbone('vit');
  const m: Model<readonly [28, 28, 1], number, number> = model;
  const name: TaskName = 'digits';
  void name;
  void specArb;
  void checkLaws;
  void maskAlgebraLaws;
  return select(gps({ k: 1 }), selectionEnv({ model: m, params, data: digits().train }));
}

/** The browser's pool, as typed for a user who passes anything shaped like a Worker. */
export function browserPool(create: WebWorkerPoolOptions['create']): Promise<WorkerPool> {
  return webWorkerPool({ workers: 2, minShard: 32, create });
}
