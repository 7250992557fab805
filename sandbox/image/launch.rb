# Start a Ruby program inside an already running interpreter.
#
# `ruby` spends most of its start-up loading RubyGems (about 150 ms at half a CPU); this
# launcher has paid for that before the program is known (a warm container). It reads the
# same header as launch.py from stdin: a line with a byte count, then that many bytes of
# JSON ({"file", "code", "files", "run", "wall_time"}). It reads exactly those bytes and
# no more (sysread, never a buffered read), so everything after them is the program's own
# stdin, untouched. It writes the entry file and any other files beside it, tells the
# container's init the run's wall time (its watchdog), then runs the file as `ruby FILE`
# would: as the main script ($0 and __FILE__ are its path, ARGV is empty), uncaught
# exceptions printed by the interpreter itself with its exit status 1, `exit N` exiting
# with N, and an uncaught Interrupt (Ctrl-C) ending the process by SIGINT. Standard output
# is unbuffered, like `python3 -u`: output streams to the student as it is written.
require "json"

module ExecstreamLaunch
  def self.read_exact(count)
    data = +""
    while data.bytesize < count
      data << $stdin.sysread(count - data.bytesize)
    end
    data
  end

  def self.read_header
    line = +""
    line << read_exact(1) until line.end_with?("\n")
    JSON.parse(read_exact(Integer(line)))
  end

  # Arm init's run deadline through the pipe it gave us; closed before the program starts,
  # so the program cannot move the deadline. Outside a container there is no such pipe.
  def self.start_watchdog(wall_time)
    fd = ENV.delete("EXECSTREAM_START_FD")
    return if fd.nil?

    pipe = IO.for_fd(Integer(fd), "w", autoclose: true)
    pipe.write(Float(wall_time).to_s)
    pipe.close
  end

  def self.mkdir_p(dir)
    return if Dir.exist?(dir)

    mkdir_p(File.dirname(dir))
    Dir.mkdir(dir)
  end

  def self.write(path, content)
    mkdir_p(File.dirname(path))
    File.write(path, content, encoding: "UTF-8")
  end

  def self.prepare
    header = read_header
    path = header.fetch("file")
    write(path, header.fetch("code"))
    # The server checked the names: relative, no "..", from a safe set of characters.
    (header["files"] || []).each do |extra|
      write(File.join(File.dirname(path), extra.fetch("name")), extra.fetch("content"))
    end
    start_watchdog(header.fetch("wall_time"))
    Dir.chdir(File.dirname(path))
    path
  end

  # The backtrace as `ruby FILE` prints it: without our frames, the script's top level
  # named <main> (load names it <top (required)>).
  def self.as_main(exc, path)
    trace = exc.backtrace or return
    trace = trace.reject { |frame| frame.start_with?(__FILE__) }
    exc.set_backtrace(trace.map { |frame| as_main_frame(frame, path) })
  end

  def self.as_main_frame(frame, path)
    return frame unless frame.start_with?("#{path}:")

    frame.sub("<top (required)>", "<main>")
  end
end

$stdout.sync = true
__execstream_path = ExecstreamLaunch.prepare
$0 = __execstream_path
begin
  load(__execstream_path)
rescue Exception => e # rubocop:disable Lint/RescueException -- re-raised to the interpreter
  ExecstreamLaunch.as_main(e, __execstream_path)
  raise e
end
