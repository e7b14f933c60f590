using Kiln.Training.Data;

namespace Kiln.Tests.Training;

public sealed class DataTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-data-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(65, 2)]
    [InlineData(65536, 2)]
    [InlineData(65537, 4)]
    [InlineData(100_000, 4)]
    public void TokenFilesRoundTripAtTheRightWidth(int vocab, int width)
    {
        int[] tokens = Enumerable.Range(0, 1001).Select(i => (int)((long)i * 7919 % vocab)).Append(vocab - 1).ToArray();
        string path = Path.Combine(_dir, "t.bin");
        TokenStreamFile.Write(path, tokens, vocab);
        Assert.Equal(TokenStreamFile.HeaderSize + tokens.Length * width, new FileInfo(path).Length);
        using var stream = TokenStream.Open(path);
        Assert.Equal(tokens.Length, stream.Count);
        Assert.Equal(vocab, stream.VocabSize);
        var back = new int[tokens.Length];
        stream.Read(0, back);
        Assert.Equal(tokens, back);
        Assert.Equal(tokens[500], stream[500]);
    }

    [Fact]
    public void TruncatedAndForeignFilesAreRefused()
    {
        string path = Path.Combine(_dir, "t.bin");
        TokenStreamFile.Write(path, [1, 2, 3, 4], 10);
        using (var f = new FileStream(path, FileMode.Open))
            f.SetLength(f.Length - 1);
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => TokenStream.Open(path)).Message);
        File.WriteAllText(path, "hello, this is text and not tokens at all");
        Assert.Contains("not a Kiln token file", Assert.Throws<InvalidDataException>(() => TokenStream.Open(path)).Message);
        Assert.Throws<FileNotFoundException>(() => TokenStream.Open(Path.Combine(_dir, "missing.bin")));
    }

    [Fact]
    public void SequentialLoaderWalksWindowsAndWraps()
    {
        string path = Path.Combine(_dir, "t.bin");
        TokenStreamFile.Write(path, Enumerable.Range(0, 11).ToArray(), 20); // windows of 3+1: starts 0, 3, 6 (9 would need token 12)
        using var stream = TokenStream.Open(path);
        var loader = new TokenBatchLoader(stream, 2, 3, shuffle: false, seed: 0);
        Assert.Equal(3, loader.Windows);
        int[] x = new int[6], y = new int[6];
        loader.Next(x, y);
        Assert.Equal([0, 1, 2, 3, 4, 5], x);
        Assert.Equal([1, 2, 3, 4, 5, 6], y);
        loader.Next(x, y);
        Assert.Equal([6, 7, 8, 0, 1, 2], x);
        Assert.Equal([7, 8, 9, 1, 2, 3], y);
        Assert.Equal(new LoaderPosition(1, 1), loader.Position);
    }

    [Fact]
    public void ShuffledLoaderVisitsEveryWindowOncePerEpochAndResumesFromItsPosition()
    {
        string path = Path.Combine(_dir, "t.bin");
        TokenStreamFile.Write(path, Enumerable.Range(0, 401).Select(i => i % 400).ToArray(), 400);
        using var stream = TokenStream.Open(path);
        var loader = new TokenBatchLoader(stream, 1, 4, shuffle: true, seed: 42);
        int[] x = new int[4], y = new int[4];
        var starts = new List<int>();
        for (int i = 0; i < 100; i++)
        {
            loader.Next(x, y);
            starts.Add(x[0]);
        }
        Assert.Equal(Enumerable.Range(0, 100).Select(i => 4 * i), starts.Order());
        Assert.NotEqual(Enumerable.Range(0, 100).Select(i => 4 * i), starts);

        for (int i = 0; i < 37; i++)
            loader.Next(x, y);
        var saved = loader.Position;
        var expected = new List<int>();
        for (int i = 0; i < 80; i++)
        {
            loader.Next(x, y);
            expected.Add(x[0]);
        }
        var resumed = new TokenBatchLoader(stream, 1, 4, shuffle: true, seed: 42) { Position = saved };
        var actual = new List<int>();
        for (int i = 0; i < 80; i++)
        {
            resumed.Next(x, y);
            actual.Add(x[0]);
        }
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void TooShortStreamSaysHowLongItMustBe()
    {
        string path = Path.Combine(_dir, "t.bin");
        TokenStreamFile.Write(path, [1, 2, 3], 10);
        using var stream = TokenStream.Open(path);
        var e = Assert.Throws<InvalidDataException>(() => new TokenBatchLoader(stream, 1, 8, false, 0));
        Assert.Contains("needs at least 9", e.Message);
    }

    [Fact]
    public void CharacterTokenizerRoundTripsAndSaves()
    {
        const string text = "hello, wörld 🙂\nhi";
        var tok = CharacterTokenizer.FromText(text);
        Assert.Equal(3 + text.EnumerateRunes().Distinct().Count(), tok.VocabSize);
        Assert.Equal("\n", tok.Symbols[0]);
        int[] ids = tok.Encode(text);
        Assert.Equal(3, tok.Encode("\n").Single()); // after the reserved ids
        Assert.Equal("a", CharacterTokenizer.FromText("a").Decode([0, 1, 3, 2]));
        Assert.Equal(text, tok.Decode(ids));
        string path = Path.Combine(_dir, "tok.json");
        File.WriteAllText(path, tok.ToJson());
        var loaded = CharacterTokenizer.Load(path);
        Assert.Equal(ids, loaded.Encode(text));
        Assert.Contains("U+0071", Assert.Throws<InvalidDataException>(() => tok.Encode("q")).Message);
    }
}
