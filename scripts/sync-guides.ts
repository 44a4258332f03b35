// Copies each example file into the guides that quote it (`<!-- example: examples/x.ts -->`
// followed by a ts fence), so a guide never drifts from the code npm test runs.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
for (const guide of readdirSync(`${root}docs`).filter((f) => f.endsWith('.md'))) {
  const path = `${root}docs/${guide}`;
  const text = readFileSync(path, 'utf8');
  const next = text.replace(/(<!-- example: (\S+) -->\n```ts\n)[\s\S]*?```/g, (_m, head: string, file: string) => `${head}${readFileSync(`${root}${file}`, 'utf8')}\`\`\``);
  if (next !== text) {
    writeFileSync(path, next);
    console.log(`updated docs/${guide}`);
  }
}
