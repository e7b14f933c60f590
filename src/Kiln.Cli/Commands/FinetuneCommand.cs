using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Kiln.Models.Llama;
using Kiln.Models.Lora;
using Kiln.Threading;
using Kiln.Tokenizers;
using Kiln.Training.Data;
using Kiln.Training.Lora;
using Kiln.Training.Optimization;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln finetune: trains LoRA adapters on a GGUF Llama-family model whose weights stay frozen in their stored type
/// (QLoRA for quantized models), and writes them as a llama.cpp LoRA adapter GGUF.
/// </summary>
internal static class FinetuneCommand
{
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
        var output = new Option<string>("--output", "-o") { Description = "Adapter GGUF to write", Required = true };
        var command = new Command("finetune", "Train LoRA adapters on a frozen GGUF model (QLoRA when it is quantized); writes a llama.cpp LoRA GGUF");
        foreach (Option o in new Option[] { model, data, rank, alpha, targets, steps, batch, seq, lr, warmup, seed, threads, logEvery, output })
            command.Options.Add(o);
        command.SetAction((r, cancellation) =>
        {
            foreach (var (option, min) in new (Option<int>, int)[] { (rank, 1), (steps, 1), (batch, 1), (seq, 1), (warmup, 0), (threads, 0), (logEvery, 1) })
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
            string modelPath = r.GetValue(model)!;
            if (!File.Exists(modelPath))
                throw new FileNotFoundException($"model file not found: {modelPath}", modelPath);
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
            var c = baseModel.Config;
            io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"kiln: finetuning {c.Architecture} {c.BlockCount} layers × {c.EmbeddingLength} ({baseModel.Layers[0].Query.Type} frozen), LoRA rank {rankValue}, alpha {alphaValue}, targets {string.Join(",", targetList.Select(LoraTargetNames.ShortName))}: {trainModel.Parameters.Count:N0} trainable parameters; {tokens.Length:N0} tokens, {options.Batch}×{options.SequenceLength} per step, {threadCount} threads"));
            var clock = Stopwatch.StartNew();
            long tokensSeen = 0;
            double first = double.NaN, last = double.NaN;
            for (int s = 0; s < options.Steps; s++)
            {
                cancellation.ThrowIfCancellationRequested();
                var step = tuner.TrainStep();
                tokensSeen += step.Tokens;
                if (double.IsNaN(first))
                    first = step.Loss;
                last = step.Loss;
                if (step.Step % r.GetValue(logEvery) == 0 || step.Step == options.Steps || step.Step == 1)
                {
                    double seconds = clock.Elapsed.TotalSeconds;
                    io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"step {step.Step}/{options.Steps} | loss {step.Loss:F4} | lr {step.LearningRate:G3} | grad norm {step.GradientNorm:F3} | {tokensSeen / Math.Max(seconds, 1e-9):F0} tokens/s | ETA {TimeSpan.FromSeconds(seconds / step.Step * (options.Steps - step.Step)):hh\\:mm\\:ss}"));
                }
            }
            string outPath = r.GetValue(output)!;
            trainModel.Adapter.Save(outPath);
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {outPath}: {adapter.Weights.Count} adapted matrices, rank {rankValue}, alpha {alphaValue}; loss {first:F4} → {last:F4} in {options.Steps} steps, {clock.Elapsed.TotalSeconds:F1} s"));
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
