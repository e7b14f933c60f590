using System.Text;
using Kiln.Formats.Llama2c;

namespace Kiln.Tests.Formats.Llama2c;

public class Llama2cTokenizerTests
{
    [Fact]
    public void ParsesPiecesScoresAndMaxLength()
    {
        var (pieces, scores) = Llama2cSampleFiles.SampleVocabulary(270);
        byte[] data = Llama2cSampleFiles.TokenizerBytes(pieces, scores);
        var tok = Llama2cTokenizer.Parse(data, 270);
        Assert.Equal(270, tok.Count);
        Assert.Equal(pieces.Max(p => Encoding.UTF8.GetByteCount(p)), tok.MaxTokenLength);
        for (int i = 0; i < 270; i++)
        {
            Assert.Equal(Encoding.UTF8.GetBytes(pieces[i]), tok.GetPiece(i).ToArray());
            Assert.Equal(scores[i], tok.GetScore(i));
        }
    }

    [Fact]
    public void AcceptsEmptyPieces()
    {
        byte[] data = Llama2cSampleFiles.TokenizerBytes([[], [0x41], []], [0f, -1f, -2f], maxTokenLength: 1);
        var tok = Llama2cTokenizer.Parse(data, 3);
        Assert.Equal(0, tok.GetPiece(2).Length);
        Assert.Equal(-2f, tok.GetScore(2));
    }

    [Fact]
    public void RejectsTruncatedTokenizer()
    {
        var (pieces, scores) = Llama2cSampleFiles.SampleVocabulary(270);
        byte[] data = Llama2cSampleFiles.TokenizerBytes(pieces, scores);
        // Cut inside the last piece's bytes and inside the last entry's score/length.
        var e1 = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Parse(data.AsSpan(0, data.Length - 1), 270));
        Assert.Contains("token 269 claims", e1.Message);
        int lastEntry = data.Length - 8 - Encoding.UTF8.GetByteCount(pieces[269]);
        var e2 = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Parse(data.AsSpan(0, lastEntry + 5), 270));
        Assert.Contains("ends inside the entry of token 269", e2.Message);
    }

    [Fact]
    public void RejectsTokenLengthPastEnd()
    {
        byte[] data = Llama2cSampleFiles.TokenizerBytes([[0x41], [0x42]], [0f, 0f]);
        BitConverter.TryWriteBytes(data.AsSpan(4 + 4), int.MaxValue);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Parse(data, 2));
        Assert.Contains("token 0 claims 2147483647 bytes", e.Message);
    }

    [Fact]
    public void RejectsNegativeTokenLength()
    {
        byte[] data = Llama2cSampleFiles.TokenizerBytes([[0x41], [0x42]], [0f, 0f]);
        BitConverter.TryWriteBytes(data.AsSpan(4 + 9 + 4), -5);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Parse(data, 2));
        Assert.Contains("token 1 has negative length -5", e.Message);
    }

    [Fact]
    public void RejectsNegativeMaxTokenLength()
    {
        byte[] data = Llama2cSampleFiles.TokenizerBytes([[0x41]], [0f], maxTokenLength: -1);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Parse(data, 1));
        Assert.Contains("max_token_length is -1", e.Message);
    }

    [Fact]
    public void RejectsTokenizerWithMoreTokensThanTheModel()
    {
        byte[] data = Llama2cSampleFiles.TokenizerBytes([[0x41], [0x42], [0x43]], [0f, 0f, 0f]);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Parse(data, 2));
        Assert.Contains("9 bytes left after 2 tokens", e.Message);
    }

    [Fact]
    public void HugeVocabSizeOnSmallFileFailsWithoutAllocating()
    {
        byte[] data = Llama2cSampleFiles.TokenizerBytes([[0x41]], [0f]);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Parse(data, int.MaxValue));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        Assert.Contains("too short for 2147483647 tokens", e.Message);
    }

    [Fact]
    public void ReadNamesTheFile()
    {
        using var files = new Llama2cSampleFiles();
        string path = files.PathOf("tok.bin");
        File.WriteAllBytes(path, [1, 0]);
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Read(path, 4));
        Assert.Contains(path, e.Message);
    }

    [SharedFact]
    public void ReadsTok512()
    {
        var tok = Llama2cTokenizer.Read(SharedData.Path("models", "tok512.bin"), 512);
        Assert.Equal(512, tok.Count);
        // llama2.c's exporter stores BOS/EOS as "\n<s>\n" / "\n</s>\n" and decodes SentencePiece's ▁ to a space.
        Assert.Equal("\n<s>\n"u8.ToArray(), tok.GetPiece(1).ToArray());
        Assert.Equal("<0x0A>"u8.ToArray(), tok.GetPiece(13).ToArray());
        Assert.Equal(" t"u8.ToArray(), tok.GetPiece(259).ToArray());
        Assert.Equal(-2f, tok.GetScore(261));
    }
}
