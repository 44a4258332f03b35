/// <reference lib="dom" />
// The page of the worker-pool example: it starts the trainer in a dedicated
// Web Worker and shows what it reports. It also shows that the pool refuses
// to run on the page's main thread, with the error a user would get.
import { webWorkerPool } from 'sparsetune';

const $ = (id: string) => document.getElementById(id)!;
const done = (result: Record<string, unknown>) => {
  $('result').textContent = JSON.stringify(result);
  $('result').dataset['done'] = '1';
};

async function mainThreadRefusal(): Promise<string> {
  try {
    await webWorkerPool({ workers: 1, create: () => new Worker('./pool-worker.js', { type: 'module' }) });
    return 'no error';
  } catch (e) {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
}

const refusal = await mainThreadRefusal();
$('refusal').textContent = refusal;
const trainer = new Worker('./trainer.js', { type: 'module' });
trainer.addEventListener('message', (e: MessageEvent<{ status?: string; result?: Record<string, unknown> }>) => {
  if (e.data.status) $('status').textContent = e.data.status;
  if (e.data.result) {
    const r = e.data.result;
    $('status').textContent = r['error'] ? `failed: ${String(r['error'])}` : 'done';
    if (!r['error']) $('speedup').textContent = `${(r['tuneSpeedup'] as number).toFixed(2)}× (fine-tuning, batch 64)`;
    done({ ...r, refusal });
  }
});
trainer.addEventListener('error', (e) => done({ error: e.message, refusal }));
