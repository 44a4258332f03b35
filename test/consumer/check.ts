// Type-checks the package's own declarations, every entry, as a TypeScript user sees them.
import { initBackend, gps, select, selectionEnv, type Mask, type Model } from 'sparsetune';
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
