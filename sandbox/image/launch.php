<?php
/* Start a PHP program inside an already running interpreter.
 *
 * `php` spends about 100 ms at half a CPU loading its extensions; this launcher has paid
 * for that before the program is known (a warm container). It reads the same header as
 * launch.py from stdin: a line with a byte count, then that many bytes of JSON ({"file",
 * "code", "files", "run", "wall_time"}), with stdin unbuffered meanwhile so it takes
 * exactly those bytes: everything after them is the program's own stdin. It writes the
 * entry file and any other files beside it, tells the container's init the run's wall time
 * (its watchdog), then includes the file as `php FILE` would run it: in the global scope,
 * with $argv, $argc and $_SERVER naming it, its folder the working directory, errors
 * reported by PHP itself (uncaught exceptions as "PHP Fatal error" on stderr, exit status
 * 255), `exit(N)` exiting with N, and Ctrl-C (SIGINT) ending the process by that signal.
 * Nothing of ours is left in the global scope: functions live in our namespace, and the
 * only state is one constant there.
 */

namespace Execstream\Launch;

function read_exact(int $count): string
{
    $data = '';
    while (strlen($data) < $count) {
        $chunk = fread(STDIN, $count - strlen($data));
        if ($chunk === false || $chunk === '') {
            throw new \RuntimeException('stdin closed before the program arrived');
        }
        $data .= $chunk;
    }
    return $data;
}

function read_header(): array
{
    stream_set_read_buffer(STDIN, 0);
    $line = '';
    while (!str_ends_with($line, "\n")) {
        $line .= read_exact(1);
    }
    $header = json_decode(read_exact((int) $line), true, 512, JSON_THROW_ON_ERROR);
    stream_set_read_buffer(STDIN, 8192);
    return $header;
}

/* Arm init's run deadline through the pipe it gave us, then close that pipe before the
 * program starts, so the program cannot move the deadline. PHP's own streams can only
 * duplicate a descriptor, never close the one inherited: libc's write and close do it. */
function start_watchdog(?\FFI $libc, float $wall_time): void
{
    $fd = getenv('EXECSTREAM_START_FD');
    if ($fd === false || $libc === null) {
        return;
    }
    putenv('EXECSTREAM_START_FD');
    unset($_SERVER['EXECSTREAM_START_FD'], $_ENV['EXECSTREAM_START_FD']);
    $text = var_export($wall_time, true);
    $libc->write((int) $fd, $text, strlen($text));
    $libc->close((int) $fd);
}

function write_file(string $path, string $content): void
{
    $folder = dirname($path);
    if (!is_dir($folder)) {
        mkdir($folder, 0777, true);
    }
    file_put_contents($path, $content);
}

function prepare(?\FFI $libc): string
{
    $header = read_header();
    $path = $header['file'];
    write_file($path, $header['code']);
    // The server checked the names: relative, no "..", from a safe set of characters.
    foreach ($header['files'] ?? [] as $extra) {
        write_file(dirname($path) . '/' . $extra['name'], $extra['content']);
    }
    start_watchdog($libc, (float) $header['wall_time']);
    chdir(dirname($path));
    return $path;
}

function as_script(string $path): void
{
    global $argv, $argc;
    $argv = [$path];
    $argc = 1;
    $_SERVER['argv'] = $argv;
    $_SERVER['argc'] = $argc;
    foreach (['SCRIPT_NAME', 'SCRIPT_FILENAME', 'PHP_SELF', 'PATH_TRANSLATED'] as $key) {
        $_SERVER[$key] = $path;
    }
}

// Loaded while we wait, not on Run. Outside a container (no pipe) libc is not needed.
define(
    'Execstream\Launch\PATH',
    prepare(getenv('EXECSTREAM_START_FD') === false ? null : \FFI::cdef(
        'long write(int fd, const char *buf, unsigned long count); int close(int fd);'
    ))
);
as_script(PATH);
include PATH;
