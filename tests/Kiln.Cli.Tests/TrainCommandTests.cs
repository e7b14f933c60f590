using Kiln.Training;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;

namespace Kiln.Cli.Tests;

public sealed class TrainCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-train-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    /// <summary>A character-level train/val pair of a repetitive text (vocabulary 3 + 8).</summary>
    private (string Train, string Val) Data()
    {
        if (!File.Exists(P("train.bin")))
        {
            File.WriteAllText(P("in.txt"), string.Concat(Enumerable.Repeat("to be or not to be\n", 60)));
            var r = KilnRunner.Run("data", "prepare", "--tokenizer", "char", P("in.txt"), "-o", P("train.bin"), P("val.bin"));
            Assert.True(r.ExitCode == 0, r.Stderr);
        }
        return (P("train.bin"), P("val.bin"));
    }

    /// <summary>The common arguments; a "--flag value" pair in <paramref name="extra"/> replaces the default of that flag.</summary>
    private string[] Args(string outDir, params string[] extra)
    {
        var (train, val) = Data();
        var args = new List<string> { "train", "--layers", "1", "--dim", "16", "--heads", "2", "--data", train, "--val", val, "--steps", "8",
            "--batch", "2", "--seq", "8", "--lr", "1e-2", "--warmup", "2", "--eval-every", "4", "--eval-batches", "2", "--threads", "2", "--out", P(outDir) };
        for (int i = 0; i < extra.Length; i++)
        {
            bool hasValue = i + 1 < extra.Length && !extra[i + 1].StartsWith("--", StringComparison.Ordinal);
            int at = args.IndexOf(extra[i]);
            if (hasValue && at >= 0)
                args[at + 1] = extra[++i];
            else if (hasValue)
                args.AddRange([extra[i], extra[++i]]);
            else
                args.Add(extra[i]);
        }
        return [.. args];
    }

    [Fact]
    public void TrainsAndWritesCheckpointMetricsAndPlot()
    {
        var r = KilnRunner.Run(Args("run"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("trained 8 steps", r.Stdout);
        Assert.Matches(@"step 8/8 \| loss [0-9.]+ \| val [0-9.]+ \| lr ", r.Stderr);
        Assert.Matches(@"kiln: 8 steps in [0-9.]+ s \(evaluation and checkpoints included\): [0-9]+ tokens/s, [0-9.]+ GFLOP/s; peak resident memory [0-9]+ MiB", r.Stderr);
        string[] csv = File.ReadAllLines(P("run/metrics.csv"));
        Assert.Equal(9, csv.Length);
        Assert.StartsWith("step,train_loss,val_loss", csv[0]);
        Assert.Equal(2, csv.Skip(1).Count(l => l.Split(',')[2].Length > 0)); // validation at steps 4 and 8
        string svg = File.ReadAllText(P("run/loss.svg"));
        Assert.StartsWith("<svg", svg);
        Assert.Contains("class=\"train\"", svg);
        Assert.Contains("class=\"validation\"", svg);
        var ckpt = TrainingCheckpoint.Read(P("run/checkpoint.bin"));
        Assert.Equal(8, ckpt.Step);
        Assert.Equal(11, ckpt.Config.Vocab); // from the data file
        Assert.Equal(ckpt.Config, TrainingConfig.FromJson(File.ReadAllText(P("run/config.json"))));
        double first = double.Parse(csv[1].Split(',')[1], System.Globalization.CultureInfo.InvariantCulture);
        double last = double.Parse(csv[8].Split(',')[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(last < first, $"loss {first} → {last}");
    }

    /// <summary>
    /// --recompute block trains to the same weights as no recomputation and reports smaller activations; a bare
    /// --recompute still means attention probabilities; an unknown mode is refused.
    /// </summary>
    [Fact]
    public void BlockRecomputationTrainsTheSameWeightsWithLessActivationMemory()
    {
        static double Activations(string stderr) => double.Parse(
            System.Text.RegularExpressions.Regex.Match(stderr, @"activations ([0-9.]+) MiB").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var plain = KilnRunner.Run(Args("plain", "--layers", "3"));
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        Assert.Matches(@"kiln: memory: weights [0-9.]+ MiB, gradients [0-9.]+ MiB, optimizer moments [0-9.]+ MiB, activations [0-9.]+ MiB \(recompute: none\)", plain.Stderr);
        var block = KilnRunner.Run(Args("block", "--layers", "3", "--recompute", "block"));
        Assert.True(block.ExitCode == 0, block.Stderr);
        Assert.Contains("(recompute: block)", block.Stderr);
        Assert.True(Activations(block.Stderr) < Activations(plain.Stderr), block.Stderr);
        Assert.Equal(TrainingCheckpoint.Read(P("plain/checkpoint.bin")).Weights, TrainingCheckpoint.Read(P("block/checkpoint.bin")).Weights);

        var bare = KilnRunner.Run(Args("bare", "--steps", "1", "--recompute"));
        Assert.True(bare.ExitCode == 0, bare.Stderr);
        Assert.Contains("(recompute: attn)", bare.Stderr);
        var bad = KilnRunner.Run(Args("bad", "--steps", "1", "--recompute", "layers"));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("--recompute 'layers' is not one of attn, block, all, none", bad.Stderr);
    }

    /// <summary>Stopping at step 4 and resuming gives the very checkpoint bytes of an uninterrupted run.</summary>
    [Fact]
    public void StopAndResumeGivesTheSameCheckpointAsOneRun()
    {
        Assert.Equal(0, KilnRunner.Run(Args("straight")).ExitCode);
        var r = KilnRunner.Run(Args("split", "--stop-at", "4"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(4, TrainingCheckpoint.Read(P("split/checkpoint.bin")).Step);
        r = KilnRunner.Run(Args("split", "--resume", "--threads", "1"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("resuming at step 4", r.Stderr);
        Assert.Equal(File.ReadAllBytes(P("straight/checkpoint.bin")), File.ReadAllBytes(P("split/checkpoint.bin")));
        Assert.Equal(9, File.ReadAllLines(P("split/metrics.csv")).Length);
    }

    [Fact]
    public void PrintsSamplesWhenAsked()
    {
        var r = KilnRunner.Run(Args("run", "--sample-every", "4"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var samples = r.Stderr.Split('\n').Where(l => l.StartsWith("sample at step ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, samples.Length);
        Assert.All(samples, l => Assert.Matches(@"^sample at step [48]: [tobenr ⏎]{150,200}$", l));
    }

    [Fact]
    public void MissingDataIsOneClearError()
    {
        var r = KilnRunner.Run("train", "--layers", "1", "--dim", "16", "--heads", "2", "--data", P("nope.bin"), "--steps", "2", "--out", P("o"));
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"kiln: error: token file not found: {P("nope.bin")}", r.Stderr.Trim());
    }

    [Fact]
    public void BadModelShapeIsOneClearError()
    {
        Data();
        var r = KilnRunner.Run(Args("o", "--dim", "15"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("heads (2) must divide dim (15)", r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));

        File.WriteAllText(P("cfg.json"), """{"family":"llama","layers":1,"dim":16,"heads":2,"vocab":4,"context":8}""");
        var (train, _) = Data();
        r = KilnRunner.Run("train", "--config", P("cfg.json"), "--data", train, "--steps", "2", "--batch", "1", "--seq", "8", "--out", P("o2"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("vocabulary of 11, larger than the model's vocab of 4", r.Stderr);
    }

    [Fact]
    public void ACheckpointOfAnotherConfigIsRefusedAndKept()
    {
        Assert.Equal(0, KilnRunner.Run(Args("run", "--stop-at", "2")).ExitCode);
        byte[] before = File.ReadAllBytes(P("run/checkpoint.bin"));
        var r = KilnRunner.Run(Args("run", "--resume", "--dim", "32"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("the checkpoint is of another model configuration", r.Stderr);
        Assert.Equal(before, File.ReadAllBytes(P("run/checkpoint.bin")));

        r = KilnRunner.Run(Args("run"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("already holds a checkpoint: pass --resume", r.Stderr);
        r = KilnRunner.Run(Args("fresh", "--resume"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("no checkpoint in", r.Stderr);
    }

    /// <summary>An absurd rate blows the weights up; training stops with one message, and the last checkpoint is the good one.</summary>
    [Fact]
    public void NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint()
    {
        var r = KilnRunner.Run(Args("nan", "--save-every", "1", "--clip", "0", "--warmup", "0", "--weight-decay", "0", "--lr", "1e30"));
        Assert.Equal(1, r.ExitCode);
        string error = r.Stderr.Trim().Split('\n')[^1];
        Assert.Matches(@"^kiln: error: (loss|gradient norm) became (NaN|∞|-∞|Infinity|-Infinity) at step (\d+): training stopped, weights from before this step are kept; the last good checkpoint \(step \d+\) is ", error);
        var ckpt = TrainingCheckpoint.Read(P("nan/checkpoint.bin"));
        Assert.Contains($"(step {ckpt.Step})", error);
    }

    /// <summary>kiln export, then kiln run greedy on the export: the text the trainer's own forward pass predicts.</summary>
    [Fact]
    public void ExportedModelRunsGreedilyAsTheTrainerPredicts()
    {
        var r = KilnRunner.Run(Args("run", "--steps", "30", "--dim", "32", "--seq", "16", "--batch", "4", "--context", "32"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.True(File.Exists(P("run/tokenizer.json")));
        r = KilnRunner.Run("export", P("run/checkpoint.bin"), "-o", P("model.gguf"), "--type", "f32");
        Assert.True(r.ExitCode == 0, r.Stderr);

        var ckpt = TrainingCheckpoint.Read(P("run/checkpoint.bin"));
        var tok = CharacterTokenizer.Load(P("run/tokenizer.json"));
        var model = Kiln.Training.Models.TrainableModel<float>.Create(ckpt.Config, null);
        ckpt.Weights.CopyTo(model.Parameters.Values, 0);
        var ids = tok.Encode("to be or").ToList();
        for (int i = 0; i < 10; i++)
        {
            model.Forward(ids.ToArray(), [], 1, ids.Count);
            var last = model.Logits.Slice((ids.Count - 1) * ckpt.Config.Vocab, ckpt.Config.Vocab);
            int best = 0;
            for (int j = 1; j < last.Length; j++)
                if (last[j] > last[best])
                    best = j;
            ids.Add(best);
        }
        string expected = tok.Decode(ids.ToArray().AsSpan(tok.Encode("to be or").Length));

        r = KilnRunner.Run("run", "-m", P("model.gguf"), "-p", "to be or", "-n", "10", "--temp", "0", "--no-display-prompt", "-t", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(expected + "\n", r.Stdout); // kiln run ends its output with a newline
    }

    /// <summary>
    /// The GPT-2 twin of the test above: train --family gpt2 → export (llama.cpp's "gpt2" GGUF) → kiln run greedy =
    /// the trainer's argmax; info names the architecture, perplexity evaluates it, serve refuses it clearly.
    /// </summary>
    [Fact]
    public void ExportedGpt2ModelRunsGreedilyAsTheTrainerPredicts()
    {
        var r = KilnRunner.Run(Args("g", "--family", "gpt2", "--steps", "30", "--dim", "32", "--seq", "16", "--batch", "4", "--context", "32"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        r = KilnRunner.Run("export", P("g/checkpoint.bin"), "-o", P("g.gguf"), "--type", "f32");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("gpt2 1 layers", r.Stdout);

        var ckpt = TrainingCheckpoint.Read(P("g/checkpoint.bin"));
        Assert.Equal(ModelFamily.Gpt2, ckpt.Config.Family);
        var tok = CharacterTokenizer.Load(P("g/tokenizer.json"));
        var model = Kiln.Training.Models.TrainableModel<float>.Create(ckpt.Config, null);
        ckpt.Weights.CopyTo(model.Parameters.Values, 0);
        int[] prompt = tok.Encode("to be or");
        int[] all = TrainingSampler.Generate(model, prompt, 10, 0f, new TrainingRandom(1));
        string expected = tok.Decode(all.AsSpan(prompt.Length));

        r = KilnRunner.Run("run", "-m", P("g.gguf"), "-p", "to be or", "-n", "10", "--temp", "0", "--no-display-prompt", "-t", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(expected + "\n", r.Stdout);

        r = KilnRunner.Run("info", P("g.gguf"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("general.architecture", r.Stdout);
        Assert.Contains("\"gpt2\"", r.Stdout);
        Assert.Contains("blk.0.attn_qkv.bias", r.Stdout);

        r = KilnRunner.Run("perplexity", "-m", P("g.gguf"), "-f", P("in.txt"), "-c", "32", "-t", "1", "--chunks", "4");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("Final estimate: PPL = ", r.Stdout);

        r = KilnRunner.Run("run", "-m", P("g.gguf"), "-p", "to", "-n", "2", "-c", "64");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--ctx-size 64 is longer than this GPT-2 model's 32 learned positions", r.Stderr);

        r = KilnRunner.Run("serve", "-m", P("g.gguf"), "--port", "0");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("kiln serve runs Llama-family models", r.Stderr);

        r = KilnRunner.Run("export", P("g/checkpoint.bin"), "-o", P("g8.gguf"), "--type", "q8_0");
        Assert.True(r.ExitCode == 0, r.Stderr);
        r = KilnRunner.Run("run", "-m", P("g8.gguf"), "-p", "to be or", "-n", "10", "--temp", "0", "-t", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
    }

    [Fact]
    public void ExportWithoutATokenizerSaysWhereItLooked()
    {
        Assert.Equal(0, KilnRunner.Run(Args("run", "--stop-at", "1")).ExitCode);
        File.Delete(P("run/tokenizer.json"));
        var r = KilnRunner.Run("export", P("run/checkpoint.bin"), "-o", P("m.gguf"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("tokenizer not found", r.Stderr);
    }

    /// <summary>The byte-level BPE path end to end: tokenizer train → data prepare → train → export → kiln run greedy = trainer argmax.</summary>
    [Fact]
    public void BytePairTokenizerFlowsThroughTrainingExportAndRun()
    {
        string corpus = string.Concat(Enumerable.Repeat("the cat sat on the mat. the dog sat on the log.\n", 40));
        File.WriteAllText(P("c.txt"), corpus);
        var r = KilnRunner.Run("tokenizer", "train", "--vocab", "300", P("c.txt"), "-o", P("tok.json"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Directory.CreateDirectory(P("bpe"));
        r = KilnRunner.Run("data", "prepare", "--tokenizer", P("tok.json"), P("c.txt"), "-o", P("bpe/train.bin"), P("bpe/val.bin"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        r = KilnRunner.Run("train", "--layers", "1", "--dim", "32", "--heads", "2", "--data", P("bpe/train.bin"), "--steps", "30", "--batch", "4",
            "--seq", "16", "--lr", "1e-2", "--threads", "2", "--out", P("bperun"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        r = KilnRunner.Run("export", P("bperun/checkpoint.bin"), "-o", P("bpe.gguf"), "--type", "f32");
        Assert.True(r.ExitCode == 0, r.Stderr);

        var tok = Assert.IsType<ByteLevelBpeTokenizer>(TrainingTokenizer.Load(P("bperun/tokenizer.json")));
        var ckpt = TrainingCheckpoint.Read(P("bperun/checkpoint.bin"));
        Assert.Equal(tok.VocabSize, ckpt.Config.Vocab); // from the data file (training stopped below 300: the text is repetitive)
        var model = Kiln.Training.Models.TrainableModel<float>.Create(ckpt.Config, null);
        ckpt.Weights.CopyTo(model.Parameters.Values, 0);
        int[] prompt = tok.Encode("the cat");
        int[] all = Kiln.Training.TrainingSampler.Generate(model, prompt, 6, 0f, new Kiln.Training.TrainingRandom(1));
        string expected = tok.Decode(all.AsSpan(prompt.Length));

        r = KilnRunner.Run("run", "-m", P("bpe.gguf"), "-p", "the cat", "-n", "6", "--temp", "0", "--no-display-prompt", "-t", "1");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(expected + "\n", r.Stdout);
        Assert.StartsWith(" sat on", expected);
    }
}
