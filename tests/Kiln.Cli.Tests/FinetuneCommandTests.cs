using System.Globalization;
using System.Text.RegularExpressions;
using Kiln.Tests.TestSupport;

namespace Kiln.Cli.Tests;

public sealed class FinetuneCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-finetune-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void FinetunesRunsWithTheAdapterAndMergesIt()
    {
        // an F32 base, so that the merged F32 model computes exactly what base + adapter does (see LoraTests)
        string model = new RandomLlama().Write(P("base.gguf"));
        File.WriteAllText(P("data.txt"), string.Concat(Enumerable.Repeat("Once upon a time the cat sat. ", 40)));
        var r = KilnRunner.Run("finetune", "-m", model, "--data", P("data.txt"), "--lora-rank", "4", "--targets", "q,v,up,down", "--steps", "30",
            "--batch", "2", "--seq", "16", "--lr", "2e-2", "--threads", "2", "-o", P("adapter.gguf"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Matches(@"step 30/30 \| loss [0-9.]+ \| lr ", r.Stderr);
        var m = Regex.Match(r.Stdout, @"loss ([0-9.]+) → ([0-9.]+)");
        Assert.True(m.Success, r.Stdout);
        double first = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), last = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        Assert.True(last < 0.5 * first, $"loss {first} → {last}");

        var baseRun = KilnRunner.Run("run", "-m", model, "-p", "Once upon", "-n", "8", "--temp", "0", "-t", "2");
        var adapted = KilnRunner.Run("run", "-m", model, "--lora", P("adapter.gguf"), "-p", "Once upon", "-n", "8", "--temp", "0", "-t", "2");
        Assert.True(adapted.ExitCode == 0, adapted.Stderr);
        Assert.NotEqual(baseRun.Stdout, adapted.Stdout);

        var export = KilnRunner.Run("export", model, "--merge-lora", P("adapter.gguf"), "--type", "f32", "-o", P("merged.gguf"));
        Assert.True(export.ExitCode == 0, export.Stderr);
        var merged = KilnRunner.Run("run", "-m", P("merged.gguf"), "-p", "Once upon", "-n", "8", "--temp", "0", "-t", "2");
        Assert.True(merged.ExitCode == 0, merged.Stderr);
        Assert.Equal(adapted.Stdout, merged.Stdout);
    }

    /// <summary>
    /// 6 steps in one run equal 3 steps (--stop-at), then --resume for 3 more on another thread count: the adapter
    /// files and the final checkpoints are byte for byte the same.
    /// </summary>
    [Fact]
    public void ResumedFinetuneEqualsOneRun()
    {
        string model = new RandomLlama().Write(P("base.gguf"));
        File.WriteAllText(P("data.txt"), string.Concat(Enumerable.Repeat("Once upon a time the cat sat. ", 40)));
        string[] Args(string dir, params string[] extra) => ["finetune", "-m", model, "--data", P("data.txt"), "--lora-rank", "2", "--targets", "q,v,down",
            "--steps", "6", "--warmup", "2", "--batch", "2", "--seq", "16", "--lr", "2e-2", "--save-every", "2", "--out", P(dir), .. extra];
        var straight = KilnRunner.Run(Args("straight", "--threads", "2"));
        Assert.True(straight.ExitCode == 0, straight.Stderr);
        var first = KilnRunner.Run(Args("split", "--stop-at", "3"));
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Equal(3, Kiln.Training.Checkpoints.LoraCheckpoint.Read(P("split/checkpoint.bin")).Step);
        var again = KilnRunner.Run(Args("split", "--stop-at", "3"));
        Assert.Contains("already holds a checkpoint", again.Stderr);
        var resumed = KilnRunner.Run(Args("split", "--resume", "--threads", "1"));
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains("resuming at step 3", resumed.Stderr);
        Assert.Equal(File.ReadAllBytes(P("straight/adapter.gguf")), File.ReadAllBytes(P("split/adapter.gguf")));
        Assert.Equal(File.ReadAllBytes(P("straight/checkpoint.bin")), File.ReadAllBytes(P("split/checkpoint.bin")));

        // the checkpoint belongs to its base model, rank and data
        string other = new RandomLlama { Seed = 5 }.Write(P("other.gguf"));
        var otherBase = KilnRunner.Run([.. Args("split", "--resume").Select(a => a == model ? other : a)]);
        Assert.NotEqual(0, otherBase.ExitCode);
        Assert.Contains("the checkpoint finetunes base.gguf", otherBase.Stderr);
        var otherRank = KilnRunner.Run([.. Args("split", "--resume").Select(a => a == "2" ? "3" : a)]);
        Assert.NotEqual(0, otherRank.ExitCode);
        Assert.Contains("resume with the same", otherRank.Stderr);
        var noCheckpoint = KilnRunner.Run(Args("none", "--resume"));
        Assert.Contains("no checkpoint in", noCheckpoint.Stderr);
    }

    /// <summary>A diverging finetune stops with one clear message and leaves the last good checkpoint loadable.</summary>
    [Fact]
    public void NonFiniteLossKeepsTheLastGoodCheckpoint()
    {
        string model = new RandomLlama().Write(P("base.gguf"));
        File.WriteAllText(P("data.txt"), string.Concat(Enumerable.Repeat("Once upon a time the cat sat. ", 40)));
        var r = KilnRunner.Run("finetune", "-m", model, "--data", P("data.txt"), "--lora-rank", "2", "--steps", "50", "--batch", "2", "--seq", "16",
            "--lr", "1e30", "--threads", "2", "--save-every", "1", "--out", P("nan"));
        Assert.NotEqual(0, r.ExitCode);
        var m = Regex.Match(r.Stderr, @"kiln: error: (loss|gradient norm) became (NaN|∞|-∞|Infinity|-Infinity) at step (\d+): training stopped, weights from before this step are kept; the last good checkpoint \(step (\d+)\) is ");
        Assert.True(m.Success, r.Stderr);
        var checkpoint = Kiln.Training.Checkpoints.LoraCheckpoint.Read(P("nan/checkpoint.bin"));
        Assert.Equal(int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture) - 1, checkpoint.Step);
        Assert.Equal(int.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture), checkpoint.Step);
        Assert.All(checkpoint.Weights, w => Assert.True(float.IsFinite(w)));
        Assert.False(File.Exists(P("nan/adapter.gguf")));
    }

    [Fact]
    public void BadInputGivesOneClearError()
    {
        string model = new RandomLlama().Write(P("base.gguf"));
        var notAdapter = KilnRunner.Run("run", "-m", model, "--lora", model, "-p", "Once", "-n", "2");
        Assert.NotEqual(0, notAdapter.ExitCode);
        Assert.Contains("is not a LoRA adapter", notAdapter.Stderr);

        File.WriteAllText(P("data.txt"), string.Concat(Enumerable.Repeat("Once upon a time. ", 20)));
        var badTarget = KilnRunner.Run("finetune", "-m", model, "--data", P("data.txt"), "--lora-rank", "2", "--targets", "q,x", "-o", P("a.gguf"));
        Assert.Equal(2, badTarget.ExitCode);
        Assert.Contains("unknown LoRA target 'x'", badTarget.Stderr);

        string other = new RandomLlama { Dim = 32 }.Write(P("other.gguf"));
        var ok = KilnRunner.Run("finetune", "-m", other, "--data", P("data.txt"), "--lora-rank", "2", "--steps", "1", "--seq", "8", "--threads", "1", "-o", P("other-adapter.gguf"));
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        var mismatch = KilnRunner.Run("run", "-m", model, "--lora", P("other-adapter.gguf"), "-p", "Once", "-n", "2");
        Assert.NotEqual(0, mismatch.ExitCode);
        Assert.Contains("another model", mismatch.Stderr);
        var mergeMismatch = KilnRunner.Run("export", model, "--merge-lora", P("other-adapter.gguf"), "-o", P("m.gguf"));
        Assert.NotEqual(0, mergeMismatch.ExitCode);
        Assert.Contains("another model", mergeMismatch.Stderr);
        Assert.False(File.Exists(P("m.gguf")));
    }
}
