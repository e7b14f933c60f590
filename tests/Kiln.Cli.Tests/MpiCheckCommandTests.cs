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

    private static MpiJob.Result Mpirun(int ranks, Dictionary<string, string> environment, params string[] kilnArguments) =>
        MpiJob.Mpirun(ranks, environment, kilnArguments);

    private static MpiJob.Result Launch(string program, string[] arguments, Dictionary<string, string> environment) =>
        MpiJob.Launch(program, arguments, environment);
}
