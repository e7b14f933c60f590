using System.Globalization;
using Kiln.Training.Checkpoints;

namespace Kiln.Cli.Tests;

/// <summary>
/// `mpirun -np N kiln train --dp …` against single-process `kiln train` with the same global batch: the same losses
/// (metrics.csv) and final weights under every ZeRO stage, checkpoints that move between layouts, one clear error for
/// a layout that does not fit, and a dead or failing rank that ends the job within seconds, resumable from the last
/// checkpoint. Tiny model, 10 steps, one thread per rank. Skipped when mpirun is absent.
/// </summary>
[Collection(WholeMachineCollection.Name)]
public sealed class DistributedTrainCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-dist-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    private void PrepareData()
    {
        if (File.Exists(P("train.bin")))
            return;
        File.WriteAllText(P("in.txt"), string.Concat(Enumerable.Repeat("to be or not to be, that is the question\n", 60)));
        var r = KilnRunner.Run("data", "prepare", "--tokenizer", "char", P("in.txt"), "-o", P("train.bin"), P("val.bin"));
        Assert.True(r.ExitCode == 0, r.Stderr);
    }

    /// <summary>kiln train's arguments for the tiny run into <paramref name="outDir"/>, then <paramref name="extra"/>.</summary>
    private string[] Args(string outDir, params string[] extra)
    {
        PrepareData();
        return ["train", "--layers", "2", "--dim", "16", "--heads", "2", "--data", P("train.bin"), "--val", P("val.bin"), "--steps", "10",
            "--batch", "4", "--seq", "8", "--lr", "1e-2", "--warmup", "2", "--eval-every", "5", "--eval-batches", "2", "--save-every", "5",
            "-t", "1", "--out", P(outDir), .. extra];
    }

    private KilnRunner.Result Single(string outDir, params string[] extra)
    {
        var r = KilnRunner.Run(Args(outDir, extra));
        Assert.True(r.ExitCode == 0, r.Stderr);
        return r;
    }

    private MpiJob.Result Mpirun(int ranks, string outDir, params string[] extra) => MpirunWith([], ranks, outDir, extra);

    private MpiJob.Result MpirunWith(Dictionary<string, string> environment, int ranks, string outDir, params string[] extra) =>
        MpiJob.Mpirun(ranks, environment, Args(outDir, extra));

    /// <summary>(train loss, validation loss or NaN) per step, as metrics.csv holds them (round-trip precision).</summary>
    private (double Train, double Val)[] Metrics(string outDir) =>
        File.ReadLines(P(Path.Combine(outDir, "metrics.csv"))).Skip(1).Select(l => l.Split(','))
            .Select(f => (double.Parse(f[1], CultureInfo.InvariantCulture), f[2].Length > 0 ? double.Parse(f[2], CultureInfo.InvariantCulture) : double.NaN))
            .ToArray();

    private TrainingCheckpoint Checkpoint(string outDir) => TrainingCheckpoint.Read(P(Path.Combine(outDir, "checkpoint.bin")));

    /// <summary>
    /// Tolerances from summation order (as DataParallelTrainingTests argues): a loss is a mean of the same per-token
    /// values added in another order, ≤ 1e-5 relative; a weight moves by Adam steps whose direction can differ for
    /// gradient elements formed with heavy cancellation, ≤ 10 steps × rate 1e-2 × 1e-3 = 1e-4 absolute. A wrong slice
    /// of the batch or a missing 1/D moves the losses by far more than 1e-5.
    /// </summary>
    private void AssertSameRun(string expected, string actual, int steps = 10)
    {
        var (a, b) = (Metrics(expected), Metrics(actual));
        Assert.Equal(steps, a.Length);
        Assert.Equal(steps, b.Length);
        for (int i = 0; i < steps; i++)
        {
            Assert.True(Math.Abs(a[i].Train - b[i].Train) <= 1e-5 * a[i].Train, $"step {i + 1}: loss {a[i].Train} vs {b[i].Train}");
            Assert.Equal(double.IsNaN(a[i].Val), double.IsNaN(b[i].Val));
            if (!double.IsNaN(a[i].Val))
                Assert.True(Math.Abs(a[i].Val - b[i].Val) <= 1e-5 * a[i].Val, $"step {i + 1}: validation {a[i].Val} vs {b[i].Val}");
        }
        Assert.True(a[^1].Train < a[0].Train - 0.1, $"the run did not learn: {a[0].Train} → {a[^1].Train}");
        var (x, y) = (Checkpoint(expected), Checkpoint(actual));
        Assert.Equal(x.Step, y.Step);
        Assert.Equal(x.Options, y.Options); // the global batch, whatever the layout
        Assert.Equal(x.DataPosition, y.DataPosition);
        double max = 0;
        for (int i = 0; i < x.Weights.Length; i++)
            max = Math.Max(max, Math.Abs(x.Weights[i] - y.Weights[i]));
        Assert.InRange(max, 0, 1e-4);
    }

    [MpiTheory]
    [InlineData(2, 0)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    [InlineData(2, 3)]
    [InlineData(4, 0)]
    [InlineData(4, 1)]
    [InlineData(4, 2)]
    [InlineData(4, 3)]
    public void DataParallelAndZeroMatchOneProcessWithTheGlobalBatch(int ranks, int zero)
    {
        Single("single");
        var run = Mpirun(ranks, "dp", "--dp", ranks.ToString(), "--zero", zero.ToString());
        Assert.True(run.ExitCode == 0, run.ToString());
        AssertSameRun("single", "dp");
        // rank 0 alone reports
        Assert.Single(run.Stdout.Split('\n'), l => l.StartsWith("trained 10 steps", StringComparison.Ordinal));
        Assert.Single(run.Stderr.Split('\n'), l => l.StartsWith("step 10/10", StringComparison.Ordinal));
        Assert.Contains($"dp {ranks} × tp 1 × pp 1{(zero > 0 ? $" ZeRO-{zero}" : "")} = {ranks} ranks", run.Stderr);
        Assert.Matches(@"kiln: rank 0 waited in communication [0-9.]+ s of [0-9.]+ s in steps \([0-9.]+%\)", run.Stderr);
        Assert.DoesNotContain("error", run.Stderr);
    }

    /// <summary>
    /// Tensor and pipeline layouts (each schedule) and their mixes with data parallelism, run by ParallelTrainer under
    /// real MPI, train as one process does with the same global batch (tolerances as above: only the order of
    /// additions differs — per micro-batch, per replica, across tensor-parallel ranks).
    /// </summary>
    [MpiTheory]
    [InlineData(2, "--tp 2")]
    [InlineData(2, "--pp 2 --micro-batches 2 --schedule gpipe")]
    [InlineData(2, "--pp 2 --micro-batches 4 --schedule 1f1b")]
    [InlineData(4, "--dp 2 --tp 2")]
    [InlineData(4, "--tp 2 --pp 2 --micro-batches 2")]
    [InlineData(4, "--dp 2 --pp 2 --micro-batches 2 --zero 1 --schedule gpipe")]
    [InlineData(8, "--dp 2 --tp 2 --pp 2 --micro-batches 2 --zero 1")]
    public void TensorAndPipelineLayoutsMatchOneProcessWithTheGlobalBatch(int ranks, string layout)
    {
        Single("single");
        var run = Mpirun(ranks, "mixed", layout.Split(' '));
        Assert.True(run.ExitCode == 0, run.ToString());
        AssertSameRun("single", "mixed");
        Assert.Single(run.Stdout.Split('\n'), l => l.StartsWith("trained 10 steps", StringComparison.Ordinal));
        if (layout.Contains("--pp 2", StringComparison.Ordinal))
            Assert.Matches(@"kiln: pipeline \((gpipe|1f1b), [0-9]+ micro-batches; bubble in theory [0-9]+%\): stage 0 idle [0-9]+%, peak activations [0-9.]+ MiB; stage 1 idle [0-9]+%, peak activations [0-9.]+ MiB", run.Stderr);
        Assert.DoesNotContain("error", run.Stderr);
    }

    /// <summary>
    /// A checkpoint written under dp 2 ZeRO-3 (step 5 of 10) continues in one process and under dp 4, each to the
    /// weights of an uninterrupted single-process run. (That every layout takes a checkpoint's weights and moments bit
    /// for bit is DistributedTrainersTests' check.)
    /// </summary>
    [MpiFact]
    public void ACheckpointWrittenUnderZero3ResumesInOneProcessAndUnderDp4()
    {
        Single("straight");
        var first = Mpirun(2, "half", "--dp", "2", "--zero", "3", "--stop-at", "5");
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Equal(5, Checkpoint("half").Step);
        foreach (string copy in new[] { "single", "dp4" })
        {
            Directory.CreateDirectory(P(copy));
            foreach (string file in Directory.GetFiles(P("half")))
                File.Copy(file, Path.Combine(P(copy), Path.GetFileName(file)));
        }
        var single = Single("single", "--resume");
        Assert.Contains("resuming at step 5", single.Stderr);
        AssertSameRun("straight", "single");
        var dp4 = Mpirun(4, "dp4", "--resume", "--dp", "4");
        Assert.True(dp4.ExitCode == 0, dp4.ToString());
        Assert.Contains("resuming at step 5", dp4.Stderr);
        AssertSameRun("straight", "dp4");
    }

    /// <summary>
    /// A layout that does not fit the job or the model: every rank finds it before any communication, rank 0 prints it
    /// once, and all ranks exit non-zero on their own (no MPI_Abort, no hang). Nothing is written.
    /// </summary>
    [MpiTheory]
    [InlineData("--dp 2", "dp 2 × tp 1 × pp 1 = 2 ranks, but the job has 4")]
    [InlineData("--tp 4", "tensor parallel over 4 ranks needs heads divisible by 4; the model has 2")]
    [InlineData("--pp 4", "pipeline parallel over 4 stages needs layers divisible by 4; the model has 2")]
    public void ALayoutThatDoesNotFitIsOneClearErrorOnEveryRank(string layout, string message)
    {
        var run = Mpirun(4, "bad", layout.Split(' '));
        Assert.NotEqual(0, run.ExitCode);
        var errors = run.Stderr.Split('\n').Where(l => l.StartsWith("kiln: error:", StringComparison.Ordinal)).ToArray();
        Assert.True(errors.Length == 1, run.ToString());
        Assert.Equal($"kiln: error: {message}", errors[0].TrimEnd());
        Assert.DoesNotContain("MPI_ABORT", run.Stderr + run.Stdout);
        Assert.False(Directory.Exists(P("bad")));
        Assert.True(run.Total < TimeSpan.FromSeconds(60), run.ToString());
    }

    [Fact]
    public void AMultiRankLayoutWithoutMpirunSaysHowToStartIt()
    {
        var r = KilnRunner.Run(Args("o", "--dp", "2", "--tp", "2"));
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("kiln: error: --dp 2 × --tp 2 × --pp 1 is a job of 4 ranks: start it with 'mpirun -np 4 kiln train …' (or add --in-process to run the ranks as threads)", r.Stderr.Trim());
    }

    /// <summary>
    /// --in-process runs the ranks as threads over LocalCommunicator (no MPI needed): the same run as one process, rank 0
    /// alone printing; a layout that does not fit is one error.
    /// </summary>
    [Fact]
    public void InProcessRanksMatchOneProcess()
    {
        Single("single");
        var r = KilnRunner.Run(Args("threads", "--dp", "2", "--zero", "2", "--in-process"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        AssertSameRun("single", "threads");
        Assert.Single(r.Stdout.Split('\n'), l => l.StartsWith("trained 10 steps", StringComparison.Ordinal));
        Assert.Contains("dp 2 × tp 1 × pp 1 ZeRO-2 = 2 ranks", r.Stderr);

        var bad = KilnRunner.Run(Args("bad", "--tp", "4", "--in-process"));
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal("kiln: error: tensor parallel over 4 ranks needs heads divisible by 4; the model has 2", bad.Stderr.Trim());
    }

    /// <summary>
    /// Rank 1 SIGKILLs itself after step 7 while rank 0 waits for it in the next step's collectives: mpirun ends the
    /// job within seconds, naming the rank. The checkpoint of step 5 survives, and --resume under mpirun finishes the
    /// run to the weights of an uninterrupted one.
    /// </summary>
    [MpiFact]
    public void AKilledRankEndsTheJobAndItResumesFromTheLastCheckpoint()
    {
        Single("straight");
        var killed = MpirunWith(new() { ["KILN_TEST_KILL_RANK"] = "1", ["KILN_TEST_KILL_STEP"] = "7" }, 2, "run", "--dp", "2", "--zero", "1");
        Assert.NotEqual(0, killed.ExitCode);
        Assert.Contains("kiln: rank 1 kills itself after step 7", killed.Stderr);
        Assert.Contains("process rank 1 with PID", killed.Stderr + killed.Stdout);
        Assert.True(killed.AfterMarker < TimeSpan.FromSeconds(30), $"the job took {killed.AfterMarker.TotalSeconds:F1} s to end after the kill");
        Assert.DoesNotContain("trained 10 steps", killed.Stdout);
        Assert.Equal(5, Checkpoint("run").Step);

        var resumed = Mpirun(2, "run", "--dp", "2", "--zero", "1", "--resume");
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.Contains("resuming at step 5", resumed.Stderr);
        AssertSameRun("straight", "run");
    }

    /// <summary>Rank 1 throws after step 7: it names itself and aborts the job; a single process resumes the run.</summary>
    [MpiFact]
    public void ARankThatThrowsAbortsTheJobNamingItselfAndOneProcessResumes()
    {
        Single("straight");
        var failed = MpirunWith(new() { ["KILN_TEST_FAIL_RANK"] = "1", ["KILN_TEST_KILL_STEP"] = "7" }, 2, "run", "--dp", "2", "--zero", "3");
        Assert.NotEqual(0, failed.ExitCode);
        Assert.Contains("kiln: error: rank 1 of 2: failure injected by KILN_TEST_FAIL_RANK after step 7; aborting the job", failed.Stderr);
        Assert.True(failed.AfterMarker < TimeSpan.FromSeconds(30), $"the job took {failed.AfterMarker.TotalSeconds:F1} s to end after the failure");
        Assert.Equal(5, Checkpoint("run").Step);

        var resumed = Single("run", "--resume");
        Assert.Contains("resuming at step 5", resumed.Stderr);
        AssertSameRun("straight", "run");
    }
}
