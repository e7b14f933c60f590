using Kiln.Training.Data;

namespace Kiln.Cli.Tests;

public sealed class DataCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-data-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void PreparesCharacterLevelTrainAndValidationFiles()
    {
        string text = Path.Combine(_dir, "in.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("to be or not to be\n", 10)));
        string train = Path.Combine(_dir, "train.bin"), val = Path.Combine(_dir, "val.bin");
        var r = KilnRunner.Run("data", "prepare", "--tokenizer", "char", text, "-o", train, val, "--val-fraction", "0.2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var t = TokenStream.Open(train);
        using var v = TokenStream.Open(val);
        Assert.Equal(190, t.Count + v.Count);
        Assert.Equal(38, v.Count);
        var tok = CharacterTokenizer.Load(Path.Combine(_dir, "tokenizer.json"));
        Assert.Equal(3 + 8, tok.VocabSize); // reserved, then \n space b e n o r t
        var ids = new int[19];
        t.Read(0, ids);
        Assert.Equal("to be or not to be\n", tok.Decode(ids));

        // the saved tokenizer encodes the same text the same way
        string train2 = Path.Combine(_dir, "train2.bin"), val2 = Path.Combine(_dir, "val2.bin");
        r = KilnRunner.Run("data", "prepare", "--tokenizer", Path.Combine(_dir, "tokenizer.json"), text, "-o", train2, val2, "--val-fraction", "0.2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(File.ReadAllBytes(train), File.ReadAllBytes(train2));
    }

    [Fact]
    public void MissingFileAndBadFractionAreOneLineErrors()
    {
        string missing = Path.Combine(_dir, "nope.txt");
        var r = KilnRunner.Run("data", "prepare", "--tokenizer", "char", missing, "-o", "a.bin", "b.bin");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("text file not found", r.Stderr);
        string text = Path.Combine(_dir, "in.txt");
        File.WriteAllText(text, "abcabcabcabc");
        r = KilnRunner.Run("data", "prepare", "--tokenizer", "char", text, "-o", "a.bin", "b.bin", "--val-fraction", "1.5");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--val-fraction 1.5 must be between 0 and 1", r.Stderr);
    }
}
