using System.Diagnostics;
using System.Text;
using Kiln.Distributed;

namespace Kiln.Cli.Tests;

/// <summary>
/// `kiln mpi-check` under Open MPI's mpirun (2 and 4 ranks, --oversubscribe: the machine may have fewer cores), and
/// what the user sees when a rank dies: the job must end within seconds, naming the rank, never hang.
/// Skipped when mpirun is absent (scripts/install-mpi.sh installs it).
/// </summary>
[Collection(WholeMachineCollection.Name)]
public sealed class MpiCheckCommandTests
{
    private static readonly string Kiln = Path.Combine(AppContext.BaseDirectory, "kiln.dll");
    private static readonly int CheckCount = CommunicatorConformance.CheckNames.Count;

    [Fact]
    public void WithoutMpirunItChecksOneRankInProcess()
    {
        var result = KilnRunner.Run("mpi-check");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("running with one rank", result.Stdout);
        Assert.Contains($"1 rank, in-process: all {CheckCount} checks passed", result.Stdout);
    }

    [Fact]
    public void UnderALauncherWithoutLibmpiItSaysHowToInstallMpi()
    {
        var run = Launch("dotnet", [Kiln, "mpi-check"], new() { ["OMPI_COMM_WORLD_SIZE"] = "2", ["KILN_MPI_LIBRARY"] = "/nonexistent/libmpi.so.40" });
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("started by an MPI launcher (OMPI_COMM_WORLD_SIZE=2)", run.Stderr);
        Assert.Contains("/nonexistent/libmpi.so.40", run.Stderr);
        Assert.Contains("scripts/install-mpi.sh", run.Stderr);
    }

    [MpiTheory]
    [InlineData(2)]
    [InlineData(4)]
    public void EveryOperationChecksOutUnderMpirun(int ranks)
    {
        var run = Mpirun(ranks, [], "mpi-check", "--bench", "--bench-elements", "100000", "--bench-runs", "5");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains($"mpi-check: {ranks} ranks, Open MPI", run.Stdout);
        Assert.Contains($"all {CheckCount} checks passed", run.Stdout);
        Assert.Single(run.Stdout.Split('\n'), l => l.Contains("checks passed")); // rank 0 alone reports
        Assert.Contains($"all-reduce of 100,000 floats (0.4 MiB) over {ranks} ranks", run.Stdout);
    }

    [MpiFact]
    public void MpiErrorsBecomeExceptionsCarryingMpisOwnMessage()
    {
        var run = Mpirun(2, [], "mpi-check", "--verbose");
        Assert.True(run.ExitCode == 0, run.ToString());
        // a receive into a buffer shorter than the message: Open MPI's error text, through MPI_ERRORS_RETURN
        Assert.Contains("as expected, receiving 8 floats into 4: MPI_Recv failed on rank 0: MPI_ERR_TRUNCATE", run.Stdout);
        // a longer one: MPI succeeds, the element count check catches it
        Assert.Contains("as expected, receiving 8 floats into 16: message from rank 1 with tag 56 holds 8 elements, not 16", run.Stdout);
    }

    /// <summary>Rank 1 SIGKILLs itself mid-run while the others wait for it in a collective: mpirun must stop them.</summary>
    [MpiFact]
    public void AKilledRankEndsTheJobWithinSecondsNamingTheRank()
    {
        var run = Mpirun(4, new() { ["KILN_TEST_KILL_RANK"] = "1" }, "mpi-check");
        Assert.Contains("rank 1 kills itself", run.Stderr);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("process rank 1 with PID", run.Stderr + run.Stdout);
        Assert.Contains("exited on signal 9", run.Stderr + run.Stdout);
        Assert.DoesNotContain("checks passed", run.Stdout);
        Assert.True(run.AfterMarker < TimeSpan.FromSeconds(30), $"the job took {run.AfterMarker.TotalSeconds:F1} s to end after the kill");
    }

    /// <summary>Rank 2 throws mid-run: it names itself and aborts the job, so the others do not wait for it forever.</summary>
    [MpiFact]
    public void ARankThatThrowsAbortsTheJobNamingItself()
    {
        var run = Mpirun(4, new() { ["KILN_TEST_FAIL_RANK"] = "2" }, "mpi-check");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("kiln: error: rank 2 of 4: failure injected by KILN_TEST_FAIL_RANK; aborting the job", run.Stderr);
        Assert.DoesNotContain("checks passed", run.Stdout);
        Assert.True(run.AfterMarker < TimeSpan.FromSeconds(30), $"the job took {run.AfterMarker.TotalSeconds:F1} s to end after the failure");
    }

    private sealed record Run(int ExitCode, string Stdout, string Stderr, TimeSpan Total, TimeSpan AfterMarker)
    {
        public override string ToString() => $"exit {ExitCode} after {Total.TotalSeconds:F1} s\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
    }

    private static Run Mpirun(int ranks, Dictionary<string, string> environment, params string[] kilnArguments)
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
    private static Run Launch(string program, string[] arguments, Dictionary<string, string> environment)
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
        return new Run(process.ExitCode, stdout.ToString(), stderr.ToString(), total, after);
    }
}
