using Kiln.Tokenizers;
using static Kiln.Tests.Tokenizers.TinyVocabularies;

namespace Kiln.Tests.Tokenizers;

public class Utf8StreamDecoderTests
{
    private static readonly Tokenizer Tokenizer = Kiln.Tokenizers.Tokenizer.Create(SentencePiece());

    [Fact]
    public void HoldsBackAnEmojiUntilItsLastByte()
    {
        var stream = new Utf8StreamDecoder(Tokenizer);
        // 🦙 = F0 9F A6 99, one byte token each
        Assert.Equal("", stream.Append(ByteId(0xF0)).ToString());
        Assert.Equal("", stream.Append(ByteId(0x9F)).ToString());
        Assert.Equal("", stream.Append(ByteId(0xA6)).ToString());
        Assert.Equal("🦙", stream.Append(ByteId(0x99)).ToString());
        Assert.Equal(" a", stream.Append(SpaceA).ToString());
        Assert.Equal("", stream.Flush().ToString());
    }

    [Fact]
    public void BrokenSequencesBecomeReplacementCharacters()
    {
        var stream = new Utf8StreamDecoder(Tokenizer);
        Assert.Equal("", stream.Append(ByteId(0xF0)).ToString());
        Assert.Equal("\uFFFDA", stream.Append(ByteId(0x41)).ToString());
        Assert.Equal("", stream.Append(ByteId(0xE2)).ToString());
        Assert.Equal("\uFFFD", stream.Flush().ToString());
    }

    [Fact]
    public void ResetForgetsHeldBytes()
    {
        var stream = new Utf8StreamDecoder(Tokenizer);
        stream.Append(ByteId(0xF0));
        stream.Reset();
        Assert.Equal("A", stream.Append(ByteId(0x41)).ToString());
        Assert.Equal("", stream.Flush().ToString());
    }

    [Fact]
    public void SpecialTokensAreShownOnlyWhenAsked()
    {
        Assert.Equal("", new Utf8StreamDecoder(Tokenizer).Append(2).ToString());
        Assert.Equal("</s>", new Utf8StreamDecoder(Tokenizer, skipSpecial: false).Append(2).ToString());
        Assert.Equal("<tool>", new Utf8StreamDecoder(Tokenizer).Append(Tool).ToString()); // user-defined: always
    }

    [Fact]
    public void AppendDoesNotAllocate()
    {
        var stream = new Utf8StreamDecoder(Tokenizer);
        int[] ids = [SpaceA, ByteId(0xF0), ByteId(0x9F), ByteId(0xA6), ByteId(0x99), BC, 2, Tool];
        // Warm up for longer than tiered compilation's call-counting delay (100 ms): a method recompiled while the
        // measured loop runs can allocate once on this thread (6,216 bytes in one CI run), which is not Append's doing.
        var warmup = System.Diagnostics.Stopwatch.StartNew();
        while (warmup.ElapsedMilliseconds < 300)
        {
            foreach (int id in ids)
                stream.Append(id);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        int total = 0;
        for (int i = 0; i < 1000; i++)
            foreach (int id in ids)
                total += stream.Append(id).Length;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        // per round: " a" (2) + "🦙" (2 UTF-16 units, on its last byte) + "bc" (2) + control "" + "<tool>" (6)
        Assert.Equal(1000 * 12, total);
    }

    [Fact]
    public void RejectsUnknownIds()
    {
        var stream = new Utf8StreamDecoder(Tokenizer);
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Append(-3));
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Append(Tokenizer.VocabSize));
    }
}
