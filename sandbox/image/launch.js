'use strict';
// Start a JavaScript or TypeScript program inside an already running Node.js.
//
// The container starts this launcher before the program is known (a warm container). The
// server then writes a header to stdin: one line with a byte count, then that many bytes of
// JSON ({"file", "code", "files", "compile", "run", "wall_time"}). The launcher reads exactly those
// bytes and no more, so everything after them is the program's own stdin, untouched. It
// tells the container's init the run's wall time (its watchdog), writes the file and the
// program's other files beside it (for require and import),
// runs the compile step if there is one (esbuild for TypeScript), and then runs the result
// as `node FILE` would, through Node's own entry-point loader.
const fs = require('fs');
const childProcess = require('child_process');
const Module = require('module');

function readExact(count) {
  const buffer = Buffer.alloc(count);
  let got = 0;
  while (got < count) {
    let n;
    try {
      n = fs.readSync(0, buffer, got, count - got, null);
    } catch (err) {
      if (err.code === 'EAGAIN') continue;
      throw err;
    }
    if (n === 0) throw new Error('stdin closed before the program arrived');
    got += n;
  }
  return buffer;
}

function readHeader() {
  let line = '';
  while (!line.endsWith('\n')) line += readExact(1).toString('latin1');
  return JSON.parse(readExact(parseInt(line, 10)).toString('utf8'));
}

// Node sets up stdout, stderr and the console lazily, on first use: do it while we wait,
// not on Run. Nothing is written: the warm-up console writes into a sink. stdin is left
// alone, since touching process.stdin would start reading the program's input.
(() => {
  const { Writable } = require('stream');
  const sink = new Writable({ write(chunk, encoding, done) { done(); } });
  new console.Console(sink, sink).log('%s %d %o', 'warm', 1, { up: true });
  process.stdout.write('');
  process.stderr.write('');
})();

// Arm init's run deadline: it reads the wall time once, from the pipe it gave us. The pipe
// is closed before the program starts, so the program cannot move the deadline. Outside a
// container (the local backend) there is no such pipe.
function startWatchdog(wallTime) {
  const fd = process.env.EXECSTREAM_START_FD;
  if (fd === undefined) return;
  delete process.env.EXECSTREAM_START_FD;
  fs.writeSync(Number(fd), String(Number(wallTime)));
  fs.closeSync(Number(fd));
}

const header = readHeader();
startWatchdog(header.wall_time);
const path = require('path');
function writeFile(name, content) {
  fs.mkdirSync(path.dirname(name), { recursive: true });
  fs.writeFileSync(name, content);
}
writeFile(header.file, header.code);
// The server checked the names: relative, no "..", from a safe set of characters.
for (const extra of header.files || []) {
  writeFile(path.join(path.dirname(header.file), extra.name), extra.content);
}

if (header.compile) {
  // The compiler must not see the program's stdin: it belongs to the program.
  const [cmd, ...args] = header.compile;
  const step = childProcess.spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (step.error) throw step.error;
  if (step.status !== 0) process.exit(step.status === null ? 1 : step.status);
}

// header.run is ["node", ...flags, FILE]: honour the flags Node can take at run time.
const run = header.run;
if (run.includes('--enable-source-maps')) process.setSourceMapsEnabled(true);
process.argv = [process.argv[0], run[run.length - 1]];
Module.runMain();
