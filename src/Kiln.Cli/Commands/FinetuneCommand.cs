using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Kiln.Models.Llama;
using Kiln.Models.Lora;
using Kiln.Threading;
using Kiln.Tokenizers;
using Kiln.Training;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;
using Kiln.Training.Lora;
using Kiln.Training.Optimization;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln finetune: trains LoRA adapters on a GGUF Llama-family model whose weights stay frozen in their stored type
/// (QLoRA for quantized models), and writes them as a llama.cpp LoRA adapter GGUF. With --out, checkpoints go to
/// DIR/checkpoint.bin (replaced atomically) and --resume continues from there bit-identically.
/// </summary>
internal static class FinetuneCommand
{
    public const string CheckpointName = "checkpoint.bin";
    public const string AdapterName = "adapter.gguf";

    public static Command Create(CliIO io)
    {
        var model = new Option<string>("--model", "-m") { Description = "Base GGUF model (its weights stay frozen)", Required = true };
        var data = new Option<string>("--data") { Description = "Training data: a .bin token file (kiln data prepare, tokenized for this model) or a text file, tokenized with the model's tokenizer", Required = true };
        var rank = new Option<int>("--lora-rank") { Description = "Rank r of the adapters", Required = true };
        var alpha = new Option<float>("--lora-alpha") { Description = "LoRA alpha; the update is scaled by alpha/rank (default: 2·rank)", DefaultValueFactory = _ => -1f };
        var targets = new Option<string>("--targets") { Description = "Matrices to adapt, comma-separated from q,k,v,o,gate,up,down", DefaultValueFactory = _ => "q,k,v,o,gate,up,down" };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps", DefaultValueFactory = _ => 100 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 4 };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence", DefaultValueFactory = _ => 64 };
        var lr = new Option<float>("--lr") { Description = "Peak learning rate (warm-up, then cosine decay to a tenth)", DefaultValueFactory = _ => 1e-3f };
        var warmup = new Option<int>("--warmup") { Description = "Linear warm-up steps" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the adapter initialization and the data order", DefaultValueFactory = _ => 1337UL };
        var threads = new Option<int>("--threads", "-t") { Description = "Worker threads; default: one per physical core" };
        var logEvery = new Option<int>("--log-every") { Description = "Progress line every N steps", DefaultValueFactory = _ => 10 };
        var output = new Option<string>("--output", "-o") { Description = "Adapter GGUF to write (default with --out: DIR/adapter.gguf)" };
        var outDir = new Option<string>("--out") { Description = "Run folder for checkpoints (checkpoint.bin: adapters, optimizer moments, step, RNG state)" };
        var resume = new Option<bool>("--resume") { Description = "Continue from the --out folder's checkpoint" };
        var stopAt = new Option<int>("--stop-at") { Description = "Stop (with a checkpoint) after this step, keeping the schedule of --steps; continue later with --resume" };
        var saveEvery = new Option<int>("--save-every") { Description = "With --out, checkpoint every N steps (and at the end)", DefaultValueFactory = _ => 100 };
        var command = new Command("finetune", "Train LoRA adapters on a frozen GGUF model (QLoRA when it is quantized); writes a llama.cpp LoRA GGUF");
        foreach (Option o in new Option[] { model, data, rank, alpha, targets, steps, batch, seq, lr, warmup, seed, threads, logEvery, output, outDir, resume, saveEvery, stopAt })
            command.Options.Add(o);
        command.SetAction((r, cancellation) =>
        {
            foreach (var (option, min) in new (Option<int>, int)[] { (rank, 1), (steps, 1), (batch, 1), (seq, 1), (warmup, 0), (threads, 0), (logEvery, 1), (saveEvery, 1), (stopAt, 0) })
                if (r.GetValue(option) < min)
                    throw new CliException($"{option.Name} {r.GetValue(option)} must be at least {min}");
            LoraTarget[] targetList;
            try
            {
                targetList = LoraTargetNames.Parse(r.GetValue(targets)!);
            }
            catch (ArgumentException e)
            {
                throw new CliException($"--targets: {e.Message}");
            }
            string? runDir = r.GetValue(outDir);
            string outPath = r.GetValue(output) ?? (runDir is null ? throw new CliException("give the adapter file with -o/--output, or a run folder with --out") : Path.Combine(runDir, AdapterName));
            string? checkpointPath = runDir is null ? null : Path.Combine(runDir, CheckpointName);
            bool resuming = r.GetValue(resume);
            if (resuming && (checkpointPath is null || !File.Exists(checkpointPath)))
                throw new CliException(checkpointPath is null ? "--resume needs --out DIR (the folder holding the checkpoint)" : $"--resume: no checkpoint in {runDir} ({CheckpointName} not found)");
            if (!resuming && checkpointPath is not null && File.Exists(checkpointPath))
                throw new CliException($"{runDir} already holds a checkpoint: pass --resume to continue it, or choose another --out");
            string modelPath = r.GetValue(model)!;
            if (!File.Exists(modelPath))
                throw new FileNotFoundException($"model file not found: {modelPath}", modelPath);
            string baseName = Path.GetFileName(modelPath);
            long baseBytes = new FileInfo(modelPath).Length;
            LoraCheckpoint? checkpoint = resuming ? LoraCheckpoint.Read(checkpointPath!) : null;
            if (checkpoint is not null && (checkpoint.BaseModel != baseName || checkpoint.BaseBytes != baseBytes))
                throw new TrainingConfigException($"the checkpoint finetunes {checkpoint.BaseModel} ({checkpoint.BaseBytes:N0} bytes), not {baseName} ({baseBytes:N0} bytes)");
            using var baseModel = LlamaModel.Load(modelPath);
            int[] tokens = ReadTokens(r.GetValue(data)!, baseModel);
            int rankValue = r.GetValue(rank);
            float alphaValue = r.GetValue(alpha) is >= 0 and var a ? a : 2f * rankValue;
            var options = new LoraFinetuneOptions
            {
                Batch = r.GetValue(batch),
                SequenceLength = r.GetValue(seq),
                Steps = r.GetValue(steps),
                LearningRate = r.GetValue(lr),
                WarmupSteps = r.GetValue(warmup),
                Seed = r.GetValue(seed),
                Adam = new AdamWOptions { WeightDecay = 0f },
            };
            var adapter = LoraAdapter.Create(baseModel.Config, rankValue, alphaValue, targetList, options.Seed);
            int threadCount = r.GetValue(threads) is > 0 and var t ? t : WorkerPool.DefaultThreadCount();
            using var pool = new WorkerPool(threadCount);
            var trainModel = new LoraLlamaModel(baseModel, adapter, pool);
            var tuner = new LoraFinetuner(trainModel, options, tokens);
            if (checkpoint is not null)
                tuner.Restore(checkpoint);
            if (runDir is not null)
                Directory.CreateDirectory(runDir);
            var c = baseModel.Config;
            io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"kiln: finetuning {c.Architecture} {c.BlockCount} layers × {c.EmbeddingLength} ({baseModel.Layers[0].Query.Type} frozen), LoRA rank {rankValue}, alpha {alphaValue}, targets {string.Join(",", targetList.Select(LoraTargetNames.ShortName))}: {trainModel.Parameters.Count:N0} trainable parameters; {tokens.Length:N0} tokens, {options.Batch}×{options.SequenceLength} per step, {threadCount} threads{(checkpoint is null ? "" : $", resuming at step {tuner.Step}")}"));
            var clock = Stopwatch.StartNew();
            long tokensSeen = 0;
            double first = double.NaN, last = double.NaN;
            long startStep = tuner.Step, savedStep = checkpoint?.Step ?? -1;
            long stop = r.GetValue(stopAt) is > 0 and var at ? Math.Min(at, options.Steps) : options.Steps;
            if (stop < options.Steps && checkpointPath is null)
                throw new CliException("--stop-at needs --out DIR, where the checkpoint to resume from is written");
            while (tuner.Step < stop)
            {
                cancellation.ThrowIfCancellationRequested();
                StepResult step;
                try
                {
                    step = tuner.TrainStep();
                }
                catch (TrainingDivergedException e)
                {
                    string kept = checkpointPath is null ? "no checkpoints are written without --out"
                        : savedStep > 0 ? $"the last good checkpoint (step {savedStep}) is {checkpointPath}" : "no checkpoint had been written yet";
                    throw new TrainingDivergedException(e.Step, e.What, kept);
                }
                if (checkpointPath is not null && (step.Step % r.GetValue(saveEvery) == 0 || step.Step == stop))
                {
                    tuner.Snapshot(baseName, baseBytes).Write(checkpointPath);
                    savedStep = step.Step;
                }
                tokensSeen += step.Tokens;
                if (double.IsNaN(first))
                    first = step.Loss;
                last = step.Loss;
                if (step.Step % r.GetValue(logEvery) == 0 || step.Step == stop || step.Step == 1)
                {
                    double seconds = clock.Elapsed.TotalSeconds;
                    io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"step {step.Step}/{options.Steps} | loss {step.Loss:F4} | lr {step.LearningRate:G3} | grad norm {step.GradientNorm:F3} | {tokensSeen / Math.Max(seconds, 1e-9):F0} tokens/s | ETA {TimeSpan.FromSeconds(seconds / (step.Step - startStep) * (options.Steps - step.Step)):hh\\:mm\\:ss}"));
                }
            }
            trainModel.Adapter.Save(outPath);
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {outPath}: {adapter.Weights.Count} adapted matrices, rank {rankValue}, alpha {alphaValue}; loss {first:F4} → {last:F4} in {tuner.Step - startStep} steps, {clock.Elapsed.TotalSeconds:F1} s"));
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>A .bin token file as it is (checked against the model's vocabulary by the finetuner), anything else as text for the model's tokenizer.</summary>
    private static int[] ReadTokens(string path, LlamaModel model)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"data file not found: {path}", path);
        if (path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
        {
            using var stream = TokenStream.Open(path);
            if (stream.Count > int.MaxValue)
                throw new CliException($"{path} holds {stream.Count} tokens, more than finetune reads");
            var tokens = new int[stream.Count];
            stream.Read(0, tokens);
            return tokens;
        }
        var tokenizer = Tokenizer.FromGguf(model.File);
        return tokenizer.Encode(File.ReadAllText(path), addSpecial: true);
    }
}
