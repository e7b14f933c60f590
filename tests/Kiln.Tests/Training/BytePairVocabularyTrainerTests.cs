using Kiln.Training.Data;

namespace Kiln.Tests.Training;

public sealed class BytePairVocabularyTrainerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-bpe-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// "low lower lowest" style corpus: the first merges are the most frequent pairs, counted by hand. Words (GPT-2
    /// split, "Ġ" = space): "low"×1, "Ġlow"×3, "Ġlower"×2, "Ġnewest"×2. Pair counts: (l,o) 6, (o,w) 6, (Ġ,l) 5, (w,e) 4, …
    /// (l,o) and (o,w) tie at 6; "lo" sorts before "ow", so "l o" is first, then "lo w" (6), then "Ġ low" (5).
    /// </summary>
    [Fact]
    public void MergesTheMostFrequentPairFirst()
    {
        var tok = BytePairVocabularyTrainer.Train(["low low low low lower lower newest newest"], 256 + 3 + 1);
        Assert.Equal(["l o", "lo w", "Ġ low"], tok.Merges);
        Assert.Equal(["lo", "low", "Ġlow", "<|endoftext|>"], tok.Tokens.Skip(256));
    }

    [Fact]
    public void EncodesAndDecodesAnyTextIncludingUnseenBytes()
    {
        string corpus = string.Concat(Enumerable.Repeat("The quick brown fox jumps over the lazy dog. ", 30));
        var tok = BytePairVocabularyTrainer.Train([corpus], 300);
        int[] ids = tok.Encode(corpus);
        // 301 GPT-2 words (10 per sentence, then the final space), 12 distinct: training runs out of repeated pairs
        // below 300 tokens once words are whole tokens, and the text then encodes at about one token per word
        Assert.InRange(tok.VocabSize, 257, 300);
        Assert.InRange(ids.Length, 301, 310);
        Assert.Equal(corpus, tok.Decode(ids));
        const string unseen = "Zürich 🙂 {}\n\t";
        Assert.Equal(unseen, tok.Decode(tok.Encode(unseen)));

        string path = Path.Combine(_dir, "tok.json");
        File.WriteAllText(path, tok.ToJson());
        var loaded = Assert.IsType<ByteLevelBpeTokenizer>(TrainingTokenizer.Load(path));
        Assert.Equal(ids, loaded.Encode(corpus));
    }

    [Fact]
    public void StopsWhenNoPairRepeats()
    {
        var tok = BytePairVocabularyTrainer.Train(["abcabc"], 1000);
        Assert.Equal(["a b", "ab c"], tok.Merges);
        Assert.Equal(256 + 2 + 1, tok.VocabSize);
    }
}
