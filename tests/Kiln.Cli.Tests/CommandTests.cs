using Kiln.Tensors;
using Kiln.Tests.TestSupport;

namespace Kiln.Cli.Tests;

public sealed class CommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RandomModel() => new RandomLlama().Write(Path.Combine(_dir, "random.gguf"));

    [SharedFact]
    public void RunGreedyPrintsLlamaCppsContinuation()
    {
        var c = StoriesReferences.Cases[0];
        var r = KilnRunner.Run("run", "-m", StoriesReferences.ModelPath, "-p", c.Prompt, "-n", "48", "--temp", "0", "-t", "2");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(c.Prompt + c.GeneratedText + Environment.NewLine, r.Stdout);
        Assert.Matches(@"prompt 5 tokens .* t/s\); generated 48 tokens", r.Stderr);
    }

    /// <summary>-fa switches to flash attention; stories260K's greedy continuation is still llama.cpp's.</summary>
    [SharedTheory]
    [InlineData("-fa")]
    [InlineData("--flash-attn")]
    public void FlashAttentionFlagKeepsLlamaCppsGreedyContinuation(string flag)
    {
        var c = StoriesReferences.Cases[3];
        var r = KilnRunner.Run("run", "-m", StoriesReferences.ModelPath, "-p", c.Prompt, "-n", "48", "--temp", "0", "-t", "2", flag);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(c.Prompt + c.GeneratedText + Environment.NewLine, r.Stdout);
    }

    [Fact]
    public void Q8_0CacheRunsWhereHeadsAreWholeBlocksAndIsRefusedClearlyElsewhere()
    {
        string good = new RandomLlama { Dim = 64, Heads = 2, KvHeads = 1 }.Write(Path.Combine(_dir, "q8-heads.gguf"));
        var ok = KilnRunner.Run("run", "-m", good, "-p", "Once", "-n", "4", "--temp", "0", "--cache-type", "q8_0");
        Assert.Equal(0, ok.ExitCode);
        var bad = KilnRunner.Run("run", "-m", RandomModel(), "-p", "Once", "-n", "4", "--cache-type", "q8_0");
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal("kiln: error: a Q8_0 KV cache needs a head size that is a multiple of 32; this model's is 16 (use f16 or f32)", bad.Stderr.Trim());
    }

    [SharedFact]
    public void SameSeedSameTextDifferentSeedDifferentText()
    {
        string[] Args(string seed) => ["run", "-m", StoriesReferences.ModelPath, "-p", "Once", "-n", "40", "--temp", "1.0", "--seed", seed, "--no-display-prompt"];
        var a = KilnRunner.Run(Args("42"));
        var b = KilnRunner.Run(Args("42"));
        var c = KilnRunner.Run(Args("43"));
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(a.Stdout, b.Stdout);
        Assert.NotEqual(a.Stdout, c.Stdout);
    }

    [SharedFact]
    public void StopStringEndsGenerationAndIsNotPrinted()
    {
        var r = KilnRunner.Run("run", "-m", StoriesReferences.ModelPath, "-p", "Once upon a time", "-n", "48", "--temp", "0", "--stop", "Lily", "--no-display-prompt");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(", there was a little girl named " + Environment.NewLine, r.Stdout);
        Assert.Contains("stop: stop string", r.Stderr);
    }

    [SharedFact]
    public void TokenizePrintsPiecesAsLlamaTokenize()
    {
        foreach (var c in StoriesReferences.Cases)
        {
            var r = KilnRunner.Run("tokenize", "-m", StoriesReferences.ModelPath, "-p", c.Prompt, "--ids");
            Assert.Equal(0, r.ExitCode);
            Assert.Equal("[" + string.Join(", ", c.PromptIds) + "]" + Environment.NewLine, r.Stdout);
        }
        var pieces = KilnRunner.Run("tokenize", "-m", StoriesReferences.ModelPath, "-p", "Once upon a time");
        Assert.Equal("     1 -> '<s>'\n   403 -> ' Once'\n   407 -> ' upon'\n   261 -> ' a'\n   378 -> ' time'\n", pieces.Stdout.Replace("\r\n", "\n"));
    }

    [SharedFact]
    public void TokenizeWorksOnVocabularyOnlyFiles()
    {
        var r = KilnRunner.Run("tokenize", "-m", SharedData.Path("tokenizer", "ggml-vocab-gpt-2.gguf"), "-p", "Hello world", "--ids");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("[15496, 995]" + Environment.NewLine, r.Stdout);
    }

    [SharedFact]
    public void InfoListsMetadataAndTensors()
    {
        var r = KilnRunner.Run("info", StoriesReferences.ModelPath);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("general.architecture", r.Stdout);
        Assert.Contains("\"llama\"", r.Stdout);
        Assert.Contains("token_embd.weight", r.Stdout);
        Assert.Contains("[64, 512]", r.Stdout);
        Assert.Contains("tensors:   48", r.Stdout);
    }

    [SharedFact]
    public void ConvertedLlama2cModelGeneratesTheSameTokens()
    {
        string output = Path.Combine(_dir, "converted.gguf");
        var convert = KilnRunner.Run("convert", SharedData.Path("models", "stories260K.bin"), "--tokenizer", SharedData.Path("models", "tok512.bin"), output);
        Assert.Equal(0, convert.ExitCode);
        foreach (var c in StoriesReferences.Cases)
        {
            var r = KilnRunner.Run("run", "-m", output, "-p", c.Prompt, "-n", "48", "--temp", "0", "--no-display-prompt");
            Assert.Equal(0, r.ExitCode);
            Assert.Equal(c.GeneratedText + Environment.NewLine, r.Stdout);
        }
    }

    [Fact]
    public void RunWorksOnASelfMadeModel()
    {
        var r = KilnRunner.Run("run", "-m", RandomModel(), "-p", "Once upon a time", "-n", "10", "--temp", "0", "--ignore-eos");
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("Once upon a time", r.Stdout);
        Assert.Contains("generated 10 tokens", r.Stderr);
    }

    [Fact]
    public void ChatReadsTurnsUntilEndOfInput()
    {
        var r = KilnRunner.RunWithInput("hello\n/reset\nhow are you?\n", "chat", "-m", RandomModel(), "-n", "5", "--seed", "1");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("chat template Plain", r.Stderr);
        // One prompt per line read, plus the one answered by end of input.
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Matches(r.Stderr, "> ").Count);
        Assert.DoesNotContain("error", r.Stderr);
    }

    [Fact]
    public void MissingModelFileIsOneLineAndExitOne()
    {
        var r = KilnRunner.Run("run", "-m", Path.Combine(_dir, "nope.gguf"), "-p", "x");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"kiln: error: model file not found: {Path.Combine(_dir, "nope.gguf")}", r.Stderr.TrimEnd());
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void AFileThatIsNotGgufIsOneClearLine()
    {
        string path = Path.Combine(_dir, "text.gguf");
        File.WriteAllText(path, "this is not a model, just some text that is long enough to have a header");
        foreach (var args in new[] { new[] { "run", "-m", path, "-p", "x" }, ["info", path], ["tokenize", "-m", path, "-p", "x"] })
        {
            var r = KilnRunner.Run(args);
            Assert.Equal(1, r.ExitCode);
            Assert.Single(r.Stderr.TrimEnd().Split('\n'));
            Assert.StartsWith("kiln: error: ", r.Stderr);
            Assert.Contains("magic", r.Stderr, StringComparison.OrdinalIgnoreCase);
        }
    }

    [Fact]
    public void VerboseAddsTheStackTrace()
    {
        string path = Path.Combine(_dir, "text.gguf");
        File.WriteAllText(path, "not gguf at all, not gguf at all, not gguf at all");
        var r = KilnRunner.Run("info", path, "--verbose");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("   at ", r.Stderr);
    }

    [Fact]
    public void UnsupportedArchitectureIsOneLine()
    {
        string path = new RandomLlama { Architecture = "falcon" }.Write(Path.Combine(_dir, "falcon.gguf"));
        var r = KilnRunner.Run("run", "-m", path, "-p", "x");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("architecture 'falcon' is not supported", r.Stderr);
        Assert.Single(r.Stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void AnUnsupportedTensorTypeIsOneLine()
    {
        string path = new RandomLlama { WeightType = GgmlType.IQ4_NL }.Write(Path.Combine(_dir, "iq4_nl.gguf"));
        var r = KilnRunner.Run("run", "-m", path, "-p", "x");
        Assert.Equal(1, r.ExitCode);
        Assert.Matches("kiln: error: .*tensor .* has type iq4_nl, which Kiln cannot compute with yet", r.Stderr);
        Assert.Single(r.Stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void APromptLongerThanTheContextIsRejected()
    {
        var r = KilnRunner.Run("run", "-m", RandomModel(), "-p", new string('x', 200), "-c", "32");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("the prompt is", r.Stderr);
        Assert.Contains("context holds 32", r.Stderr);
    }

    [Theory]
    [InlineData("run", "--bogus")]
    [InlineData("run", "-m")]
    [InlineData("run", "-m", "x.gguf", "--temp", "hot")]
    [InlineData("frobnicate")]
    [InlineData("run", "-m", "x.gguf", "--cache-type", "q3")]
    public void BadFlagsAreUsageErrors(params string[] args)
    {
        var r = KilnRunner.Run(args);
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith("kiln: error: ", r.Stderr);
        Assert.Contains("--help", r.Stderr);
    }

    [Fact]
    public void OutOfRangeSamplingValuesAreRejected()
    {
        var r = KilnRunner.Run("run", "-m", RandomModel(), "-p", "x", "--top-p", "1.5");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("top", r.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void HelpDescribesEachCommand()
    {
        foreach (string command in new[] { "run", "chat", "info", "tokenize", "convert", "bench" })
        {
            var r = KilnRunner.Run(command, "--help");
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("Usage:", r.Stdout);
        }
    }
}
