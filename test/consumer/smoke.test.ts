// vitest in a consumer project with no special configuration.
import { expect, test } from 'vitest';
import { countMask, gps, initBackend, replaceHead, select, selectionEnv, subset } from 'sparsetune';
import { digits, loadBackbone } from 'sparsetune/node';

test('GPS selects one input connection per neuron on the shipped ViT', async () => {
  await initBackend();
  const { model: backbone, params: pretrained } = loadBackbone('vit');
  const task = digits({ testSize: 16 });
  const model = backbone.withClasses(task.classes);
  const params = replaceHead(model, pretrained, 0);
  const mask = select(gps({ k: 1 }), selectionEnv({ model, params, data: subset(task.train, [...Array(16).keys()]) }));
  expect(countMask(mask).trainable).toBeGreaterThan(0);
}, 120_000);
