using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Kiln.Distributed;
using Kiln.Distributed.Mpi;
using Kiln.Distributed.Planning;
using Kiln.Threading;
using Kiln.Training;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;
using Kiln.Training.Models;
using Kiln.Training.Optimization;
using Kiln.Training.Parallel;
using Kiln.Training.Reporting;
using Spectre.Console;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln train: trains a GPT-2 or Llama model from scratch on a token file. The output folder holds config.json,
/// checkpoint.bin (latest, replaced atomically), metrics.csv and loss.svg; --resume continues from its checkpoint.
/// </summary>
internal static class TrainCommand
{
    public const string CheckpointName = "checkpoint.bin";

    private sealed class Flags
    {
        public readonly Option<string> Config = new("--config") { Description = "Model configuration JSON (family, layers, dim, heads, kvHeads, ffn, vocab, context)" };
        public readonly Option<string> Family = new("--family") { Description = "Model family when given by flags: llama or gpt2", DefaultValueFactory = _ => "llama" };
        public readonly Option<int> Layers = new("--layers") { Description = "Transformer blocks" };
        public readonly Option<int> Dim = new("--dim") { Description = "Model width" };
        public readonly Option<int> Heads = new("--heads") { Description = "Attention heads" };
        public readonly Option<int> KvHeads = new("--kv-heads") { Description = "KV heads (Llama GQA); default: as many as heads" };
        public readonly Option<int> Ffn = new("--ffn") { Description = "Feed-forward width; default: the family's rule" };
        public readonly Option<int> Vocab = new("--vocab") { Description = "Vocabulary size; default: the data file's" };
        public readonly Option<int> Context = new("--context") { Description = "Context length; default: --seq" };
        public readonly Option<string> Data = new("--data") { Description = "Training token file (kiln data prepare)", Required = true };
        public readonly Option<string> Val = new("--val") { Description = "Validation token file" };
        public readonly Option<int> Steps = new("--steps") { Description = "Optimizer steps in total", Required = true };
        public readonly Option<int> Batch = new("--batch") { Description = "Sequences per micro-batch", DefaultValueFactory = _ => 4 };
        public readonly Option<int> Seq = new("--seq") { Description = "Tokens per sequence", DefaultValueFactory = _ => 64 };
        public readonly Option<float> Lr = new("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 3e-4f };
        public readonly Option<float> MinLr = new("--min-lr") { Description = "Final learning rate of the cosine decay; default: lr/10", DefaultValueFactory = _ => -1f };
        public readonly Option<int> Warmup = new("--warmup") { Description = "Linear warm-up steps" };
        public readonly Option<int> GradAccum = new("--grad-accum") { Description = "Micro-batches per step", DefaultValueFactory = _ => 1 };
        public readonly Option<float> Clip = new("--clip") { Description = "Gradient-norm limit (0: off)", DefaultValueFactory = _ => 1f };
        public readonly Option<float> WeightDecay = new("--weight-decay") { Description = "AdamW decoupled weight decay (matrices only)", DefaultValueFactory = _ => 0.1f };
        public readonly Option<ulong> Seed = new("--seed") { Description = "Seed of initialization and data order", DefaultValueFactory = _ => 1337UL };
        public readonly Option<bool> Sequential = new("--sequential") { Description = "Read the data in order instead of shuffled windows" };
        public readonly Option<string> Recompute = new("--recompute")
        {
            Description = "Recompute in backward instead of storing: attn (attention probabilities; the meaning of a bare --recompute), block (everything but each block's input), all (both)",
            Arity = ArgumentArity.ZeroOrOne,
            DefaultValueFactory = _ => "none",
        };
        public readonly Option<int> Threads = new("--threads", "-t") { Description = "Worker threads; default: one per physical core" };
        public readonly Option<string> Out = new("--out", "-o") { Description = "Output folder", Required = true };
        public readonly Option<bool> Resume = new("--resume") { Description = "Continue from the output folder's checkpoint" };
        public readonly Option<int> EvalEvery = new("--eval-every") { Description = "Validation loss every N steps (and at the end)", DefaultValueFactory = _ => 100 };
        public readonly Option<int> EvalBatches = new("--eval-batches") { Description = "Batches per validation", DefaultValueFactory = _ => 20 };
        public readonly Option<int> SaveEvery = new("--save-every") { Description = "Checkpoint every N steps (and at the end)", DefaultValueFactory = _ => 500 };
        public readonly Option<int> SampleEvery = new("--sample-every") { Description = "Print a text sample every N steps (needs tokenizer.json beside the data; 0: never)" };
        public readonly Option<int> StopAt = new("--stop-at") { Description = "Stop (with a checkpoint) after this step, keeping the schedule of --steps; continue later with --resume" };
        public readonly Option<int> LogEvery = new("--log-every") { Description = "Progress line every N steps when not on a terminal", DefaultValueFactory = _ => 10 };
        public readonly Option<int> Dp = new("--dp") { Description = "Data-parallel replicas (run as 'mpirun -np N kiln train …' with N = dp × tp × pp); --batch is the global batch", DefaultValueFactory = _ => 1 };
        public readonly Option<int> Tp = new("--tp") { Description = "Tensor-parallel shards (Megatron-LM)", DefaultValueFactory = _ => 1 };
        public readonly Option<int> Pp = new("--pp") { Description = "Pipeline stages", DefaultValueFactory = _ => 1 };
        public readonly Option<int> Zero = new("--zero") { Description = "ZeRO stage over the data-parallel ranks: 0 (off), 1 (moments), 2 (+ gradients), 3 (+ parameters)" };
        public readonly Option<int> MicroBatches = new("--micro-batches") { Description = "Pipeline micro-batches per batch", DefaultValueFactory = _ => 1 };
        public readonly Option<bool> InProcess = new("--in-process") { Description = "Run the layout's ranks as threads of this process instead of under mpirun" };
        public readonly Option<string> Schedule = new("--schedule") { Description = "Pipeline schedule: gpipe or 1f1b", DefaultValueFactory = _ => "1f1b" };

        public IEnumerable<Option> All => [Config, Family, Layers, Dim, Heads, KvHeads, Ffn, Vocab, Context, Data, Val, Steps, Batch, Seq, Lr, MinLr,
            Warmup, GradAccum, Clip, WeightDecay, Seed, Sequential, Recompute, Threads, Out, Resume, EvalEvery, EvalBatches, SaveEvery, SampleEvery, StopAt, LogEvery,
            Dp, Tp, Pp, Zero, MicroBatches, Schedule, InProcess];
        public Option[] ModelFlags => [Layers, Dim, Heads, KvHeads, Ffn, Vocab, Context];
    }

    public static Command Create(CliIO io)
    {
        var f = new Flags();
        var command = new Command("train", "Train a GPT-2 or Llama model from scratch on a token file (see 'kiln data prepare')");
        foreach (var o in f.All)
            command.Options.Add(o);
        command.SetAction((r, cancellation) => Task.FromResult(Run(io, f, r, cancellation)));
        return command;
    }

    /// <summary>Test hooks: the rank named here kills itself (SIGKILL) or throws after step KILN_TEST_KILL_STEP (default: half the steps).</summary>
    internal const string KillStepVariable = "KILN_TEST_KILL_STEP";

    private static int Run(CliIO io, Flags f, ParseResult r, CancellationToken cancellation)
    {
        var world = MpiCommunicator.TryCreateWorld();
        if (world is not null)
            return RunRank(io, f, r, world, cancellation);
        if (r.GetValue(f.InProcess))
            return RunInProcess(io, f, r, cancellation);
        using var alone = LocalCommunicator.CreateWorld(1)[0];
        using var setup = Prepare(io, f, r, alone);
        using var trainer = setup.Create(alone);
        return Train(io, setup, trainer, alone, cancellation);
    }

    /// <summary>
    /// --in-process: the layout's ranks as threads of this process over <see cref="LocalCommunicator"/>, each with its
    /// own worker pool; for trying a layout without MPI. A rank that fails ends the others (their next exchange throws).
    /// </summary>
    private static int RunInProcess(CliIO io, Flags f, ParseResult r, CancellationToken cancellation)
    {
        int ranks = checked(Math.Max(1, r.GetValue(f.Dp)) * Math.Max(1, r.GetValue(f.Tp)) * Math.Max(1, r.GetValue(f.Pp)));
        try
        {
            return LocalCommunicator.Run(ranks, world => RunRank(io, f, r, world, cancellation))[0];
        }
        catch (CommunicatorException e) when (e is { FailedRank: int rank, InnerException: { } failure })
        {
            io.Out.Flush();
            ReportError(io, failure, $"rank {rank} of {ranks}", r.GetValue(CliApp.Verbose));
            return 1;
        }
    }

    /// <summary>
    /// One rank of a job (an mpirun process, or a thread with --in-process). Set-up errors (flags, files, a layout that
    /// does not fit) are agreed on before any rank starts training: every rank reports whether it failed, then all exit
    /// with an error, rank 0 printing its message once (or each failed rank its own, named, when rank 0 did not fail).
    /// A failure once training has started may leave the others waiting in a collective, so under MPI the failed rank
    /// names itself and aborts the job (MPI_Abort: mpirun ends every rank); in-process it throws, which ends the other
    /// threads. Divergence is the exception: every rank detects it at the same step and exits on its own.
    /// </summary>
    private static int RunRank(CliIO io, Flags f, ParseResult r, Communicator world, CancellationToken cancellation)
    {
        bool verbose = r.GetValue(CliApp.Verbose);
        var rankIo = world.Rank == 0 ? io : new CliIO(io.In, TextWriter.Null, TextWriter.Null);
        string who = $"rank {world.Rank} of {world.Size}";
        Setup? setup = null;
        Exception? failure = null;
        try
        {
            setup = Prepare(rankIo, f, r, world);
        }
        catch (Exception e)
        {
            failure = e;
        }
        try
        {
            int[] failed = [failure is null ? 0 : 1, world.Rank == 0 && failure is not null ? 1 : 0];
            world.AllReduce<int>(failed);
            if (failed[0] > 0)
            {
                if (failure is not null && (world.Rank == 0 || failed[1] == 0))
                    ReportError(io, failure, world.Rank == 0 ? null : who, verbose);
                world.Dispose();
                return failure is CliException ? 2 : 1;
            }
            using var owned = setup!;
            // The trainer's communicators (its dp/tp/pp groups) are freed before the world ends MPI: freeing one after
            // MPI_Finalize aborts the job. On other failures the rank aborts the job below and frees nothing.
            var trainer = owned.Create(world);
            int code;
            try
            {
                code = Train(rankIo, owned, trainer, world, cancellation);
            }
            catch (TrainingDivergedException e)
            {
                if (world.Rank == 0)
                    ReportError(io, e, null, verbose);
                code = 1;
            }
            trainer.Dispose();
            world.Dispose();
            return code;
        }
        catch (Exception e) when (world is MpiCommunicator mpi)
        {
            io.Out.Flush();
            ReportError(io, e, who, verbose, "; aborting the job");
            mpi.Abort(1);
            throw; // not reached: Abort ends the process
        }
    }

    private static void ReportError(CliIO io, Exception e, string? rank, bool verbose, string suffix = "")
    {
        io.Error.WriteLine($"kiln: error: {(rank is null ? "" : rank + ": ")}{CliApp.Describe(e)}{suffix}");
        if (verbose)
            io.Error.WriteLine(e.ToString());
        io.Error.Flush();
    }

    /// <summary>Everything a rank needs before the trainer exists, checked: no communication happens while it is made.</summary>
    private sealed class Setup : IDisposable
    {
        public required ParallelLayout Layout { get; init; }
        public required string OutDir { get; init; }
        public required string CheckpointPath { get; init; }
        public required TokenStream Train { get; init; }
        public required TokenStream? Val { get; init; }
        public required TrainingCheckpoint? Checkpoint { get; init; }
        public required TrainingConfig Config { get; init; }
        public required TrainerOptions Options { get; init; }
        public required int Threads { get; init; }
        public required WorkerPool Pool { get; init; }
        public required string DataTokenizer { get; init; }
        public required string? SampleTokenizer { get; init; }
        public required int SampleEvery { get; init; }
        public required int EvalEvery { get; init; }
        public required int EvalBatches { get; init; }
        public required int SaveEvery { get; init; }
        public required int LogEvery { get; init; }
        public required int StopAt { get; init; }

        public IDistributedTrainer Create(Communicator world) => Checkpoint is null
            ? DistributedTrainers.Start(world, Layout, Config, Options, Train, Pool)
            : DistributedTrainers.Resume(world, Layout, Checkpoint, Options, Train, Pool);

        public void Dispose()
        {
            Pool.Dispose();
            Val?.Dispose();
            Train.Dispose();
        }
    }

    private static Setup Prepare(CliIO io, Flags f, ParseResult r, Communicator world)
    {
        foreach (var (option, min) in new (Option<int>, int)[] { (f.Steps, 1), (f.Batch, 1), (f.Seq, 1), (f.GradAccum, 1), (f.EvalEvery, 1), (f.EvalBatches, 1), (f.SaveEvery, 1), (f.LogEvery, 1), (f.Warmup, 0), (f.Threads, 0), (f.StopAt, 0), (f.SampleEvery, 0), (f.Dp, 1), (f.Tp, 1), (f.Pp, 1), (f.MicroBatches, 1) })
        {
            int v = r.GetValue(option);
            if (v < min)
                throw new CliException($"{option.Name} {v} must be at least {min}");
        }
        var layout = new ParallelLayout
        {
            Dp = r.GetValue(f.Dp),
            Tp = r.GetValue(f.Tp),
            Pp = r.GetValue(f.Pp),
            Zero = r.GetValue(f.Zero) is >= 0 and <= 3 and var z ? z : throw new CliException($"--zero {r.GetValue(f.Zero)} is not one of 0, 1, 2, 3"),
            MicroBatches = r.GetValue(f.MicroBatches),
            Schedule = TrainingFlagValues.Schedule(r.GetValue(f.Schedule)!),
        };
        if (world.Size == 1 && layout.Ranks > 1)
            throw new CliException(
                $"--dp {layout.Dp} × --tp {layout.Tp} × --pp {layout.Pp} is a job of {layout.Ranks} ranks: start it with 'mpirun -np {layout.Ranks} kiln train …' (or add --in-process to run the ranks as threads)");
        string outDir = r.GetValue(f.Out)!;
        string checkpointPath = Path.Combine(outDir, CheckpointName);
        bool resume = r.GetValue(f.Resume);
        if (resume && !File.Exists(checkpointPath))
            throw new CliException($"--resume: no checkpoint in {outDir} ({CheckpointName} not found)");
        if (!resume && File.Exists(checkpointPath))
            throw new CliException($"{outDir} already holds a checkpoint: pass --resume to continue it, or choose another --out");

        var train = TokenStream.Open(r.GetValue(f.Data)!);
        TokenStream? val = null;
        try
        {
            string? valPath = r.GetValue(f.Val);
            val = valPath is null ? null : TokenStream.Open(valPath);
            TrainingCheckpoint? checkpoint = resume ? TrainingCheckpoint.Read(checkpointPath) : null;
            TrainingConfig config = ResolveConfig(f, r, train, checkpoint);
            var options = new TrainerOptions
            {
                Batch = r.GetValue(f.Batch),
                SequenceLength = r.GetValue(f.Seq),
                Steps = r.GetValue(f.Steps),
                GradAccum = r.GetValue(f.GradAccum),
                LearningRate = r.GetValue(f.Lr),
                MinLearningRate = r.GetValue(f.MinLr),
                WarmupSteps = r.GetValue(f.Warmup),
                Clip = r.GetValue(f.Clip),
                Adam = new AdamWOptions { WeightDecay = r.GetValue(f.WeightDecay) },
                Seed = r.GetValue(f.Seed),
                Shuffle = !r.GetValue(f.Sequential),
                Recompute = TrainingFlagValues.Recompute(r.GetResult(f.Recompute) is { Implicit: false, Tokens.Count: 0 } ? "attn" : r.GetValue(f.Recompute)!),
            };
            options.Validate(config);
            if (val is not null && val.VocabSize > config.Vocab)
                throw new TrainingConfigException($"{val.Path} was tokenized with a vocabulary of {val.VocabSize}, larger than the model's vocab of {config.Vocab}");
            if (val is not null && val.Count < options.SequenceLength + 1)
                throw new InvalidDataException($"{val.Path} holds {val.Count} tokens; a sequence of {options.SequenceLength} needs at least {options.SequenceLength + 1}");
            DistributedTrainers.Check(world, layout, config, options);
            checkpoint?.EnsureContinuedBy(config, options);

            // the data's tokenizer travels with the run, so 'kiln export' finds it beside the checkpoint
            string dataTokenizer = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(train.Path))!, "tokenizer.json");
            string runTokenizer = Path.Combine(outDir, "tokenizer.json");
            int sampleEvery = r.GetValue(f.SampleEvery);
            string? sampleTokenizer = null;
            if (sampleEvery > 0)
            {
                // decided from files no rank writes, so every rank agrees on whether samples (a collective gather) happen
                sampleTokenizer = File.Exists(dataTokenizer) ? dataTokenizer : File.Exists(runTokenizer) ? runTokenizer
                    : throw new CliException($"--sample-every needs the data's tokenizer: {dataTokenizer} not found");
            }
            int threads = r.GetValue(f.Threads) is > 0 and var t ? t : WorkerPool.DefaultThreadCount();
            return new Setup
            {
                Layout = layout,
                OutDir = outDir,
                CheckpointPath = checkpointPath,
                Train = train,
                Val = val,
                Checkpoint = checkpoint,
                Config = config,
                Options = options,
                Threads = threads,
                Pool = new WorkerPool(threads),
                DataTokenizer = dataTokenizer,
                SampleTokenizer = sampleTokenizer,
                SampleEvery = sampleEvery,
                EvalEvery = r.GetValue(f.EvalEvery),
                EvalBatches = r.GetValue(f.EvalBatches),
                SaveEvery = r.GetValue(f.SaveEvery),
                LogEvery = r.GetValue(f.LogEvery),
                StopAt = r.GetValue(f.StopAt) is > 0 and var stop ? Math.Min(stop, options.Steps) : options.Steps,
            };
        }
        catch
        {
            val?.Dispose();
            train.Dispose();
            throw;
        }
    }

    /// <summary>Every rank runs the loop (its steps, evaluations, saves and samples are collective); rank 0 alone writes files and prints.</summary>
    private static int Train(CliIO io, Setup setup, IDistributedTrainer trainer, Communicator world, CancellationToken cancellation)
    {
        bool writer = world.Rank == 0;
        var config = setup.Config;
        var options = setup.Options;
        MetricsLog? metrics = null;
        TrainingTokenizer? sampleTokenizer = null;
        if (writer)
        {
            Directory.CreateDirectory(setup.OutDir);
            File.WriteAllText(Path.Combine(setup.OutDir, "config.json"), config.ToJson());
            string runTokenizer = Path.Combine(setup.OutDir, "tokenizer.json");
            if (File.Exists(setup.DataTokenizer) && !File.Exists(runTokenizer))
                File.Copy(setup.DataTokenizer, runTokenizer);
            metrics = MetricsLog.Open(Path.Combine(setup.OutDir, "metrics.csv"), trainer.Step);
            if (setup.SampleTokenizer is not null)
                sampleTokenizer = TrainingTokenizer.Load(setup.SampleTokenizer);
        }
        using var metricsLog = metrics;
        var layout = setup.Layout;
        string parallel = layout.Ranks == 1 && layout.Zero == 0 ? ""
            : $", dp {layout.Dp} × tp {layout.Tp} × pp {layout.Pp}{(layout.Zero > 0 ? $" ZeRO-{layout.Zero}" : "")} = {layout.Ranks} ranks";
        io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"kiln: {config.Family.ToString().ToLowerInvariant()} {config.Layers} layers × {config.Dim}, {new ModelFootprint(config).Parameters:N0} parameters; {options.Batch}×{options.SequenceLength}×{options.GradAccum} = {trainer.TokensPerStep} tokens/step, {setup.Threads} threads{(layout.Ranks > 1 ? " per rank" : "")}{parallel}{(setup.Checkpoint is not null ? $", resuming at step {trainer.Step}" : "")}"));

        var loop = new TrainingLoop(io, trainer, world, options, setup.Val, metrics, setup.OutDir, setup.CheckpointPath, setup.SampleTokenizer is null ? 0 : setup.SampleEvery,
            sampleTokenizer, setup.EvalEvery, setup.EvalBatches, setup.SaveEvery, setup.LogEvery, setup.StopAt, cancellation);
        bool interactive = writer && ReferenceEquals(io.Error, ConsoleStreams.Stderr) && !Console.IsErrorRedirected;
        if (interactive)
            loop.RunWithProgressBar();
        else
            loop.Run(null);
        return 0;
    }

    private static TrainingConfig ResolveConfig(Flags f, ParseResult r, TokenStream train, TrainingCheckpoint? checkpoint)
    {
        string? configPath = r.GetValue(f.Config);
        bool anyModelFlag = f.ModelFlags.Any(o => r.GetResult(o) is { Implicit: false }) || r.GetResult(f.Family) is { Implicit: false };
        if (configPath is not null && anyModelFlag)
            throw new CliException("give the model either with --config or with flags (--layers, --dim, …), not both");
        TrainingConfig config;
        if (configPath is not null)
        {
            if (!File.Exists(configPath))
                throw new FileNotFoundException($"config file not found: {configPath}", configPath);
            config = TrainingConfig.FromJson(File.ReadAllText(configPath), configPath);
        }
        else if (anyModelFlag)
        {
            string family = r.GetValue(f.Family)!;
            config = new TrainingConfig
            {
                Family = family switch
                {
                    "llama" => ModelFamily.Llama,
                    "gpt2" => ModelFamily.Gpt2,
                    _ => throw new CliException($"--family '{family}' is not one of llama, gpt2"),
                },
                Layers = r.GetValue(f.Layers),
                Dim = r.GetValue(f.Dim),
                Heads = r.GetValue(f.Heads),
                KvHeads = r.GetValue(f.KvHeads),
                Ffn = r.GetValue(f.Ffn),
                Vocab = r.GetValue(f.Vocab) is > 0 and var v ? v : train.VocabSize,
                Context = r.GetValue(f.Context) is > 0 and var c ? c : r.GetValue(f.Seq),
            };
            config.Validate();
        }
        else if (checkpoint is not null)
        {
            config = checkpoint.Config;
        }
        else
        {
            throw new CliException("no model given: pass --config FILE, or --layers, --dim and --heads");
        }
        return config;
    }

    /// <summary>
    /// The step loop with its reporting, shared by the progress-bar and plain-line front ends. Every rank runs it (steps,
    /// evaluations, saves and samples are collective); <paramref name="metrics"/> is null on all but rank 0, which alone
    /// writes and prints.
    /// </summary>
    private sealed class TrainingLoop(CliIO io, IDistributedTrainer trainer, Communicator world, TrainerOptions options, TokenStream? val, MetricsLog? metrics,
        string outDir, string checkpointPath, int sampleEvery, TrainingTokenizer? tokenizer, int evalEvery, int evalBatches, int saveEvery, int logEvery, int stopAt, CancellationToken cancellation)
    {
        private long _savedStep = -1;

        public void RunWithProgressBar()
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("starting", maxValue: options.Steps);
                    task.Value = trainer.Step;
                    Run((line, step) =>
                    {
                        task.Description = Markup.Escape(line);
                        task.Value = step;
                    });
                });
        }

        /// <summary>Trains to the final step. With <paramref name="progress"/> null, prints a line every logEvery steps.</summary>
        public void Run(Action<string, long>? progress)
        {
            var clock = Stopwatch.StartNew();
            long startStep = trainer.Step;
            double elapsedBefore = metrics is { Rows.Count: > 0 } ? metrics.Rows[^1].ElapsedSeconds : 0;
            _savedStep = startStep > 0 ? startStep : -1;
            double lastVal = double.NaN;
            var (kill, fail, faultStep) = FaultInjection(startStep);
            TimeSpan stepTime = TimeSpan.Zero, communication = TimeSpan.Zero, pipelineIdle = TimeSpan.Zero;
            while (trainer.Step < stopAt)
            {
                cancellation.ThrowIfCancellationRequested();
                double stepStart = clock.Elapsed.TotalSeconds;
                StepResult s;
                try
                {
                    s = trainer.TrainStep();
                }
                catch (TrainingDivergedException e)
                {
                    WritePlot();
                    string kept = _savedStep > 0 ? $"the last good checkpoint (step {_savedStep}) is {checkpointPath}" : "no checkpoint had been written yet";
                    throw new TrainingDivergedException(e.Step, e.What, kept);
                }
                stepTime += trainer.LastStepTimes.Total;
                communication += trainer.LastStepTimes.Communication;
                pipelineIdle += trainer.LastStepTimes.PipelineIdle;
                double stepSeconds = clock.Elapsed.TotalSeconds - stepStart;
                double valLoss = double.NaN;
                bool last = s.Step == stopAt;
                if (val is not null && (s.Step % evalEvery == 0 || last))
                    lastVal = valLoss = trainer.Evaluate(val, evalBatches);
                double done = clock.Elapsed.TotalSeconds;
                double tokensPerSecond = (s.Step - startStep) * trainer.TokensPerStep / Math.Max(done, 1e-9);
                metrics?.Add(new MetricsRow(s.Step, s.Loss, valLoss, s.LearningRate, s.GradientNorm, s.Tokens / Math.Max(stepSeconds, 1e-9), elapsedBefore + done));
                if (s.Step % saveEvery == 0 || last)
                {
                    trainer.Save(checkpointPath);
                    _savedStep = s.Step;
                }
                if (s.Step % evalEvery == 0 || last)
                    WritePlot();
                double eta = (options.Steps - s.Step) * trainer.TokensPerStep / Math.Max(tokensPerSecond, 1e-9);
                string line = string.Create(CultureInfo.InvariantCulture,
                    $"step {s.Step}/{options.Steps} | loss {s.Loss:F4}{(double.IsNaN(lastVal) ? "" : $" | val {lastVal:F4}")} | lr {s.LearningRate:0.###e+0} | norm {s.GradientNorm:F2} | {tokensPerSecond:F0} tok/s | ETA {TimeSpan.FromSeconds(Math.Round(eta)):c} | rss {ResidentMiB():F0} MiB");
                if (progress is not null)
                    progress(line, s.Step);
                else if (s.Step % logEvery == 0 || last || !double.IsNaN(valLoss))
                    io.Error.WriteLine(line);
                if (sampleEvery > 0 && s.Step % sampleEvery == 0)
                    Sample(s.Step);
                if (s.Step == faultStep)
                    InjectFault(kill, fail);
            }
            WritePlot();
            var final = metrics is { Rows.Count: > 0 } ? metrics.Rows[^1] : default;
            double seconds = clock.Elapsed.TotalSeconds;
            double rate = (trainer.Step - startStep) * trainer.TokensPerStep / Math.Max(seconds, 1e-9);
            double peakMiB;
            using (var self = Process.GetCurrentProcess())
                peakMiB = self.PeakWorkingSet64 / (1024.0 * 1024.0);
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"trained {trainer.Step} steps: loss {final.TrainLoss:F4}{(double.IsNaN(lastVal) ? "" : $", validation loss {lastVal:F4}")}; checkpoint {checkpointPath}"));
            io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"kiln: {trainer.Step - startStep} steps in {seconds:F1} s (evaluation and checkpoints included): {rate:F0} tokens/s, {rate * trainer.FlopsPerToken / 1e9:F2} GFLOP/s; peak resident memory {peakMiB:F0} MiB{(world.Size > 1 ? " (rank 0)" : "")}"));
            if (world.Size > 1)
                io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"kiln: rank 0 waited in communication {communication.TotalSeconds:F2} s of {stepTime.TotalSeconds:F2} s in steps ({100.0 * communication.Ticks / Math.Max(stepTime.Ticks, 1):F1}%)"));
            const double MiB = 1024.0 * 1024.0;
            var held = trainer.MemoryHeld();
            long? activations = trainer switch
            {
                SingleProcessTrainer single => single.Trainer.Model.ActivationBytes,
                DataParallelRun dp => dp.Trainer.Model.ActivationBytes,
                _ => null,
            };
            io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"kiln: memory{(world.Size > 1 ? " of rank 0" : "")}: weights {held.ParameterBytes / MiB:F1} MiB, gradients {held.GradientBytes / MiB:F1} MiB, optimizer moments {held.MomentBytes / MiB:F1} MiB{(activations is { } a ? $", activations {a / MiB:F1} MiB" : "")} (recompute: {TrainingFlagValues.RecomputeName(options.Recompute)})"));
            if (trainer is ParallelTrainer { Groups.Layout.Pp: > 1 } pipeline)
                ReportPipeline(pipeline, stepTime, pipelineIdle);
        }

        /// <summary>
        /// Collective (every rank of a pipeline layout calls it): rank 0 prints each stage's measured bubble (idle share
        /// of its step time) beside the theory (P − 1)/(M + P − 1), and its peak activation memory.
        /// </summary>
        private void ReportPipeline(ParallelTrainer pipeline, TimeSpan stepTime, TimeSpan idle)
        {
            var layout = pipeline.Groups.Layout;
            double[] mine = [idle.TotalSeconds, stepTime.TotalSeconds, pipeline.LastStatistics?.PeakActivationBytes ?? 0];
            var all = new double[3 * world.Size];
            world.AllGather<double>(mine, all);
            double theory = (layout.Pp - 1.0) / (layout.MicroBatches + layout.Pp - 1.0);
            var stages = Enumerable.Range(0, layout.Pp).Select(stage =>
            {
                int r = layout.RankOf(0, 0, stage);
                return string.Create(CultureInfo.InvariantCulture,
                    $"stage {stage} idle {100 * all[3 * r] / Math.Max(all[3 * r + 1], 1e-9):F0}%, peak activations {all[3 * r + 2] / (1024.0 * 1024.0):F1} MiB");
            });
            io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"kiln: pipeline ({TrainingFlagValues.ScheduleName(layout.Schedule)}, {layout.MicroBatches} micro-batches; bubble in theory {100 * theory:F0}%): {string.Join("; ", stages)}"));
        }

        /// <summary>Resident memory now, so a log shows whether it grows from step to step (it should not: steps allocate nothing).</summary>
        private static double ResidentMiB()
        {
            using var self = Process.GetCurrentProcess();
            return self.WorkingSet64 / (1024.0 * 1024.0);
        }

        /// <summary>The fault tests' hooks (<see cref="MpiCheckCommand.KillRankVariable"/>, …): which rank fails, how, and after which step.</summary>
        private (int? Kill, int? Fail, long Step) FaultInjection(long startStep)
        {
            static int? Read(string name) => int.TryParse(Environment.GetEnvironmentVariable(name), out int v) ? v : null;
            int? kill = Read(MpiCheckCommand.KillRankVariable), fail = Read(MpiCheckCommand.FailRankVariable);
            if (kill != world.Rank && fail != world.Rank)
                return (null, null, -1);
            return (kill, fail, Read(KillStepVariable) is { } step && step > startStep ? step : startStep + (stopAt - startStep) / 2);
        }

        private void InjectFault(int? kill, int? fail)
        {
            if (kill == world.Rank)
            {
                Console.Error.WriteLine($"kiln: rank {world.Rank} kills itself after step {trainer.Step} ({MpiCheckCommand.KillRankVariable})");
                Console.Error.Flush();
                Process.GetCurrentProcess().Kill(); // SIGKILL: no clean-up, no MPI_Finalize, as a crashed node
            }
            if (fail == world.Rank)
                throw new InvalidOperationException($"failure injected by {MpiCheckCommand.FailRankVariable} after step {trainer.Step}");
        }

        private TrainableModel<float>? _sampler;

        /// <summary>
        /// 200 tokens at temperature 0.8 from a newline, on a copy of the weights (the trained model keeps its buffers).
        /// Collective: the weights are gathered to rank 0, which alone samples and prints.
        /// </summary>
        private void Sample(long step)
        {
            float[]? weights = trainer is SingleProcessTrainer single ? single.Trainer.Model.Parameters.Values : trainer.Gather()?.Weights;
            if (weights is null || tokenizer is null)
                return;
            _sampler ??= TrainableModel<float>.Create(trainer.Config, null);
            weights.CopyTo(_sampler.Parameters.Values, 0);
            int start = Math.Min(tokenizer.SampleStartId, trainer.Config.Vocab - 1);
            // its own generator, seeded by the step: sampling must not move the run's RNG, or resumed runs would differ
            int[] ids = TrainingSampler.Generate(_sampler, [start], 200, 0.8f, new TrainingRandom(options.Seed ^ (ulong)step));
            io.Error.WriteLine($"sample at step {step}: {tokenizer.Decode(ids.AsSpan(1)).ReplaceLineEndings("⏎")}");
        }

        private void WritePlot()
        {
            if (metrics is not null)
                File.WriteAllText(Path.Combine(outDir, "loss.svg"), LossCurveSvg.Render(metrics.Rows, $"{trainer.Config.Family.ToString().ToLowerInvariant()} {trainer.Config.Layers}×{trainer.Config.Dim}: loss"));
        }
    }
}
