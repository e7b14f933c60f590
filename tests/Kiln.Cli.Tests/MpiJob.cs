using System.Diagnostics;
using System.Text;

namespace Kiln.Cli.Tests;

/// <summary>
/// Runs kiln under Open MPI's mpirun (--oversubscribe: the machine may have fewer cores than ranks; as root with
/// Open MPI's explicit consent) or any program, to its end, with its output and how long it took to end after a rank
/// reported a failure.
/// </summary>
internal static class MpiJob
{
    public static readonly string Kiln = Path.Combine(AppContext.BaseDirectory, "kiln.dll");

    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Total, TimeSpan AfterMarker)
    {
        public override string ToString() => $"exit {ExitCode} after {Total.TotalSeconds:F1} s\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
    }

    public static Result Mpirun(int ranks, Dictionary<string, string> environment, params string[] kilnArguments)
    {
        // running as root (containers, CI) needs Open MPI's explicit consent; harmless otherwise
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        return Launch("mpirun", ["--oversubscribe", "-np", ranks.ToString(), "dotnet", Kiln, .. kilnArguments], environment);
    }

    /// <summary>
    /// Runs a process to its end (killed after 120 s: a hang fails the test instead of stalling the suite). AfterMarker
    /// is the time from the first stderr line naming a failure (a rank killing itself or throwing) to the exit.
    /// </summary>
    public static Result Launch(string program, string[] arguments, Dictionary<string, string> environment)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in arguments)
            start.ArgumentList.Add(a);
        foreach (var (name, value) in environment)
            start.Environment[name] = value;
        start.Environment["TERM"] = "dumb";
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        long marker = 0;
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        process.OutputDataReceived += (_, e) => { lock (stdout) stdout.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line && (line.Contains("kills itself") || line.Contains("kiln: error: rank")))
                Interlocked.CompareExchange(ref marker, clock.ElapsedTicks, 0);
            lock (stderr) stderr.AppendLine(e.Data);
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            Assert.Fail($"{program} still running after 120 s\nstdout:\n{stdout}\nstderr:\n{stderr}");
        }
        process.WaitForExit(); // drains the redirected streams
        var total = clock.Elapsed;
        long at = Interlocked.Read(ref marker);
        var after = at == 0 ? TimeSpan.Zero : total - TimeSpan.FromSeconds(at / (double)Stopwatch.Frequency);
        return new Result(process.ExitCode, stdout.ToString(), stderr.ToString(), total, after);
    }
}
