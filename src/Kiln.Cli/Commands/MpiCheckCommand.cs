using System.CommandLine;
using System.Diagnostics;
using Kiln.Distributed;
using Kiln.Distributed.Mpi;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln mpi-check: run as `mpirun -np N kiln mpi-check`, exercises every communicator operation against results each
/// rank computes itself (<see cref="CommunicatorConformance"/>), prints one summary line on rank 0 and exits 1 on any
/// mismatch. A rank that throws ends the whole job (MPI_Abort) so that no rank is left waiting for it.
/// --bench adds the all-reduce bandwidth the planner's cost model needs; --verbose shows the errors provoked on purpose.
/// </summary>
internal static class MpiCheckCommand
{
    /// <summary>Test hooks: the rank named here kills itself (SIGKILL) or throws, in the middle of the checks.</summary>
    internal const string KillRankVariable = "KILN_TEST_KILL_RANK", FailRankVariable = "KILN_TEST_FAIL_RANK";

    public static Command Create(CliIO io)
    {
        var bench = new Option<bool>("--bench") { Description = "Also measure all-reduce bandwidth (median of --bench-runs runs)" };
        var elements = new Option<int>("--bench-elements") { Description = "Floats per all-reduce in --bench", DefaultValueFactory = _ => 1 << 20 };
        var runs = new Option<int>("--bench-runs") { Description = "Timed all-reduces in --bench", DefaultValueFactory = _ => 20 };
        var command = new Command("mpi-check", "Check the MPI set-up: run as 'mpirun -np N kiln mpi-check'; every rank verifies every operation");
        command.Options.Add(bench);
        command.Options.Add(elements);
        command.Options.Add(runs);
        command.SetAction(r =>
        {
            if (r.GetValue(elements) < 1 || r.GetValue(runs) < 1)
                throw new CliException("--bench-elements and --bench-runs must be at least 1");
            var world = MpiCommunicator.TryCreateWorld();
            if (world is null)
            {
                io.Out.WriteLine("mpi-check: not started by an MPI launcher; running with one rank (use 'mpirun -np N kiln mpi-check' to check MPI)");
                using var alone = LocalCommunicator.CreateWorld(1)[0];
                return Run(io, alone, "in-process", r.GetValue(CliApp.Verbose), r.GetValue(bench), r.GetValue(elements), r.GetValue(runs));
            }
            int code;
            try
            {
                string name = $"{world.LibraryVersion}, thread level {ThreadLevelName(world.ThreadLevel)}";
                code = Run(io, world, name, r.GetValue(CliApp.Verbose), r.GetValue(bench), r.GetValue(elements), r.GetValue(runs));
            }
            catch (Exception e)
            {
                io.Out.Flush();
                io.Error.WriteLine($"kiln: error: rank {world.Rank} of {world.Size}: {e.Message}; aborting the job");
                io.Error.Flush();
                world.Abort(1);
                throw; // not reached: Abort ends the process
            }
            world.Dispose();
            return code;
        });
        return command;
    }

    private static int Run(CliIO io, Communicator comm, string library, bool verbose, bool bench, int elements, int runs)
    {
        int? kill = RankFrom(KillRankVariable), fail = RankFrom(FailRankVariable);
        int middle = CommunicatorConformance.CheckNames.Count / 2;
        var report = CommunicatorConformance.Run(comm, check =>
        {
            if (check != middle)
                return;
            if (kill == comm.Rank)
            {
                io.Error.WriteLine($"mpi-check: rank {comm.Rank} kills itself ({KillRankVariable})");
                io.Error.Flush();
                Process.GetCurrentProcess().Kill(); // SIGKILL: no clean-up, no MPI_Finalize
            }
            if (fail == comm.Rank)
                throw new InvalidOperationException($"failure injected by {FailRankVariable}");
        });
        foreach (string failure in report.LocalFailures)
            io.Error.WriteLine($"mpi-check: rank {comm.Rank}: {failure}");
        if (comm.Rank == 0 && verbose)
            foreach (string error in report.ExpectedErrors)
                io.Out.WriteLine($"mpi-check: as expected, {error}");
        if (comm.Rank == 0)
        {
            string ranks = comm.Size == 1 ? "1 rank" : $"{comm.Size} ranks";
            if (report.Passed)
                io.Out.WriteLine($"mpi-check: {ranks}, {library}: all {report.Checks.Count} checks passed");
            else
                io.Out.WriteLine($"mpi-check: {ranks}, {library}: {report.Failed} of {report.Checks.Count} checks FAILED: " +
                    string.Join(", ", report.Checks.Select((c, i) => (c, n: report.FailedRankCounts[i])).Where(x => x.n > 0).Select(x => $"{x.c} (on {x.n} ranks)")));
        }
        if (bench)
            Bench(io, comm, elements, runs);
        return report.Passed ? 0 : 1;
    }

    /// <summary>
    /// Times all-reduces of <paramref name="elements"/> floats, each started together after a barrier; rank 0 reports
    /// the median, the algorithm bandwidth (bytes / time) and the bus bandwidth (NCCL's convention, 2(n-1)/n · bytes /
    /// time: what each link carried in a ring all-reduce).
    /// </summary>
    private static void Bench(CliIO io, Communicator comm, int elements, int runs)
    {
        var data = new float[elements];
        data.AsSpan().Fill(1f / 1024);
        for (int i = 0; i < 3; i++)
            comm.AllReduce<float>(data);
        var seconds = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            comm.Barrier();
            long start = Stopwatch.GetTimestamp();
            comm.AllReduce<float>(data);
            seconds[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        // the slowest rank bounds a step: take each run's maximum over ranks
        var all = new double[runs * comm.Size];
        comm.AllGather<double>(seconds, all);
        var slowest = new double[runs];
        for (int i = 0; i < runs; i++)
            for (int r = 0; r < comm.Size; r++)
                slowest[i] = Math.Max(slowest[i], all[r * runs + i]);
        Array.Sort(slowest);
        double median = slowest[runs / 2];
        double bytes = elements * 4.0;
        double algorithm = bytes / median / 1e9;
        double bus = comm.Size == 1 ? algorithm : algorithm * 2 * (comm.Size - 1) / comm.Size;
        double overlapWait = MeasureOverlap(comm, data, median);
        if (comm.Rank == 0)
            io.Out.WriteLine($"mpi-check: all-reduce of {elements:N0} floats ({bytes / (1 << 20):F1} MiB) over {comm.Size} ranks: " +
                $"median {median * 1e3:F2} ms of {runs} (min {slowest[0] * 1e3:F2}, max {slowest[^1] * 1e3:F2}); " +
                $"algorithm bandwidth {algorithm:F2} GB/s, bus bandwidth {bus:F2} GB/s; " +
                $"non-blocking, waited on after {2 * median * 1e3:F2} ms of work: {overlapWait * 1e3:F2} ms left to wait");
    }

    /// <summary>
    /// How much of a non-blocking all-reduce is left after computing (without calling MPI) for twice its blocking
    /// time: near zero when the library progresses messages in the background, near the blocking time when it only
    /// progresses inside MPI calls (Open MPI's default), in which case overlapping code must call Test now and then.
    /// Median over five tries of the slowest rank.
    /// </summary>
    private static double MeasureOverlap(Communicator comm, float[] data, double blockingSeconds)
    {
        var waits = new double[5];
        for (int i = 0; i < waits.Length; i++)
        {
            comm.Barrier();
            var request = comm.AllReduceAsync<float>(data);
            long start = Stopwatch.GetTimestamp();
            while (Stopwatch.GetElapsedTime(start).TotalSeconds < 2 * blockingSeconds)
                Thread.SpinWait(100);
            start = Stopwatch.GetTimestamp();
            request.Wait();
            double[] wait = [Stopwatch.GetElapsedTime(start).TotalSeconds];
            var all = new double[comm.Size];
            comm.AllGather<double>(wait, all);
            waits[i] = all.Max();
        }
        Array.Sort(waits);
        return waits[waits.Length / 2];
    }

    private static int? RankFrom(string variable) =>
        int.TryParse(Environment.GetEnvironmentVariable(variable), out int rank) ? rank : null;

    private static string ThreadLevelName(int level) => level switch
    {
        0 => "single",
        1 => "funneled",
        2 => "serialized",
        3 => "multiple",
        _ => level.ToString(),
    };
}
