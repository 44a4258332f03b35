/**
 * A progress bar on stderr for `fineTune`.
 *
 * @module
 */
import type { StepProgress } from '../optim/train.js';

/**
 * Draws `fineTune`'s progress as one line on stderr, redrawn in place,
 * ending the line when an epoch ends. It is the default when stderr is a
 * terminal.
 * @example
 * ```ts
 * import { stderrProgressBar } from 'sparsetune/node';
 * fineTune({ model, params, mask, train, progressBar: stderrProgressBar });
 * ```
 * @category Training
 */
export function stderrProgressBar(p: StepProgress): void {
  const width = 24;
  const filled = Math.round((width * p.step) / p.steps);
  process.stderr.write(`\r  epoch ${p.epoch} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.step}/${p.steps} loss ${p.loss.toFixed(4)}  `);
  if (p.step === p.steps) process.stderr.write('\n');
}
