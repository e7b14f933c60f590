using System.Text;
using Kiln.Inference.Text;

namespace Kiln.Tests.Inference.Text;

public class StopStringMatcherTests
{
    /// <summary>
    /// Brute-force reference: scan end positions left to right; the first end at which some stop string ends wins
    /// (the longest one if several end there). Returns the text before it, or the whole text.
    /// </summary>
    private static (string Emitted, bool Stopped) Reference(string text, string[] stops)
    {
        for (int end = 1; end <= text.Length; end++)
        {
            string? best = null;
            foreach (string stop in stops)
            {
                if (stop.Length <= end && string.CompareOrdinal(text, end - stop.Length, stop, 0, stop.Length) == 0
                    && (best is null || stop.Length > best.Length))
                    best = stop;
            }
            if (best is not null)
                return (text[..(end - best.Length)], true);
        }
        return (text, false);
    }

    /// <summary>Streams the chunks; after a stop the rest of the chunks are not fed (a generator would stop).</summary>
    private static (string Emitted, bool Stopped) Stream(StopStringMatcher matcher, IEnumerable<string> chunks)
    {
        var sb = new StringBuilder();
        foreach (string chunk in chunks)
        {
            bool stopped = matcher.Append(chunk, out var emit);
            sb.Append(emit);
            if (stopped)
                return (sb.ToString(), true);
        }
        sb.Append(matcher.Flush());
        return (sb.ToString(), false);
    }

    private static IEnumerable<string> SplitAt(string text, params int[] cuts)
    {
        int previous = 0;
        foreach (int cut in cuts)
        {
            yield return text[previous..cut];
            previous = cut;
        }
        yield return text[previous..];
    }

    public static TheoryData<string, string[]> Cases => new()
    {
        { "Hello there.\n\nUser: what now?", ["\n\nUser:"] },
        { "xxaaab yy", ["aab"] },
        { "abcd", ["abcd", "bc"] },
        { "abcd", ["cd", "bcd"] },
        { "one <|im_end|> two <|im_start|>", ["<|im_start|>", "<|im_end|>"] },
        { "no stop string in here at all <|im", ["<|im_end|>"] },
        { "ababababc", ["ababc", "babc", "c"] },
        { "\n\n\n", ["\n\n"] },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryChunking_EmitsTheSameTextAsTheReference(string text, string[] stops)
    {
        var expected = Reference(text, stops);
        var matcher = new StopStringMatcher(stops);

        Assert.Equal(expected, Stream(matcher, [text]));
        matcher.Reset();
        Assert.Equal(expected, Stream(matcher, text.Select(ch => ch.ToString())));
        for (int i = 0; i <= text.Length; i++)
        {
            for (int j = i; j <= text.Length; j++)
            {
                matcher.Reset();
                Assert.Equal(expected, Stream(matcher, SplitAt(text, i, j)));
            }
        }
    }

    [Fact]
    public void RandomTextsAndChunkings_MatchTheReference()
    {
        var random = new Random(2024);
        string[] stops = ["aab", "ba\n", "\n\n", "bbbb"];
        var matcher = new StopStringMatcher(stops);
        for (int trial = 0; trial < 2000; trial++)
        {
            var chars = new char[random.Next(0, 30)];
            for (int i = 0; i < chars.Length; i++)
                chars[i] = "ab\n"[random.Next(3)];
            string text = new(chars);
            var cuts = Enumerable.Range(0, random.Next(0, 6)).Select(_ => random.Next(0, text.Length + 1)).Order().ToArray();
            matcher.Reset();
            Assert.Equal(Reference(text, stops), Stream(matcher, SplitAt(text, cuts)));
        }
    }

    [Fact]
    public void StopSpanningChunks_IsFound_AndTheTextBeforeItReleased()
    {
        var matcher = new StopStringMatcher(["\n\nUser:"]);
        Assert.False(matcher.Append("Hello\n", out var emit));
        Assert.Equal("Hello", emit.ToString());
        Assert.False(matcher.Append("\nUs", out emit));
        Assert.Equal("", emit.ToString());
        Assert.True(matcher.Append("er: more", out emit));
        Assert.Equal("", emit.ToString());
        Assert.True(matcher.Stopped);
        Assert.Equal("\n\nUser:", matcher.MatchedStopString);
        Assert.Equal("", matcher.Flush().ToString());
    }

    [Fact]
    public void OverlappingPrefix_AabInAaab()
    {
        var matcher = new StopStringMatcher(["aab"]);
        Assert.False(matcher.Append("a", out var emit));
        Assert.Equal("", emit.ToString());
        Assert.False(matcher.Append("a", out emit));
        Assert.Equal("", emit.ToString());
        Assert.False(matcher.Append("a", out emit));
        Assert.Equal("a", emit.ToString()); // "aa" may still begin "aab"; the first "a" can't any more
        Assert.True(matcher.Append("b", out emit));
        Assert.Equal("", emit.ToString());
    }

    [Fact]
    public void PartialStopAtEnd_IsReleasedByFlush()
    {
        var matcher = new StopStringMatcher(["<|im_end|>"]);
        Assert.False(matcher.Append("Hello <|im", out var emit));
        Assert.Equal("Hello ", emit.ToString());
        Assert.Equal("<|im", matcher.Flush().ToString());
        Assert.Equal("", matcher.Flush().ToString());
        // Flushing does not end the stream: matching carries on.
        Assert.False(matcher.Append("x<|im_e", out emit));
        Assert.Equal("x", emit.ToString());
        Assert.True(matcher.Append("nd|>", out emit));
        Assert.Equal("", emit.ToString());
    }

    [Fact]
    public void AfterAStop_AppendThrowsUntilReset()
    {
        var matcher = new StopStringMatcher(["END"]);
        Assert.True(matcher.Append("abcEND", out var emit));
        Assert.Equal("abc", emit.ToString());
        Assert.Throws<InvalidOperationException>(() => matcher.Append("more", out _));
        matcher.Reset();
        Assert.False(matcher.Stopped);
        Assert.False(matcher.Append("more", out emit));
        Assert.Equal("more", emit.ToString());
    }

    [Fact]
    public void NoStopStrings_PassesEverythingThrough()
    {
        var matcher = new StopStringMatcher([]);
        Assert.False(matcher.Append("anything", out var emit));
        Assert.Equal("anything", emit.ToString());
    }

    [Fact]
    public void LargeChunks_GrowTheBuffer()
    {
        var matcher = new StopStringMatcher(["STOP"]);
        string big = new string('x', 10_000);
        Assert.False(matcher.Append(big + "ST", out var emit));
        Assert.Equal(big, emit.ToString());
        Assert.True(matcher.Append("OP" + big, out emit));
        Assert.Equal("", emit.ToString());
    }

    [Fact]
    public void Constructor_RejectsEmptyOrNullStopStrings()
    {
        Assert.Throws<ArgumentNullException>(() => new StopStringMatcher(null!));
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => new StopStringMatcher(["ok", ""])).Message);
        Assert.Throws<ArgumentException>(() => new StopStringMatcher(["ok", null!]));
    }

    [Fact]
    public void SteadyStateStreaming_AllocatesNothing()
    {
        var matcher = new StopStringMatcher(["<|im_end|>", "\n\nUser:"]);
        string[] chunks = ["Hello", " world", "\n", "<|im", "_start", "|>", " and", "\n\nUs", "age"];
        foreach (string chunk in chunks)
            matcher.Append(chunk, out _);

        long before = GC.GetAllocatedBytesForCurrentThread();
        int emitted = 0;
        for (int i = 0; i < 1000; i++)
        {
            matcher.Append(chunks[i % chunks.Length], out var emit);
            emitted += emit.Length;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.True(emitted > 0);
    }
}
