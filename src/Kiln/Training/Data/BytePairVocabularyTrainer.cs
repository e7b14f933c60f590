using System.Text;
using Kiln.Tokenizers.PreTokenization;

namespace Kiln.Training.Data;

/// <summary>
/// Learns a byte-level BPE vocabulary as GPT-2's was made: text split by GPT-2's pre-tokenizer into words, each word
/// a sequence of its UTF-8 bytes; then, repeatedly, the most frequent adjacent pair (counted over distinct words
/// weighted by frequency) becomes a new token. Ties go to the pair whose merged text sorts first (ordinal), so the
/// result does not depend on dictionary order. Starts from all 256 bytes; ends with &lt;|endoftext|&gt;.
/// </summary>
public static class BytePairVocabularyTrainer
{
    public const int MinimumVocab = 256 + 1;

    public static ByteLevelBpeTokenizer Train(IEnumerable<string> texts, int vocabSize)
    {
        if (vocabSize < MinimumVocab)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, $"a byte-level vocabulary needs at least {MinimumVocab} tokens (256 bytes + end of text)");
        var words = CountWords(texts);
        var tokens = new List<string>(vocabSize);
        for (int b = 0; b < 256; b++)
            tokens.Add(ByteLevelAlphabet.ByteToChar((byte)b).ToString());
        var merges = new List<string>();
        var pairCounts = new Dictionary<(int, int), long>();
        while (tokens.Count < vocabSize - 1)
        {
            pairCounts.Clear();
            foreach (var (symbols, count) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    var pair = (symbols[i], symbols[i + 1]);
                    pairCounts[pair] = pairCounts.GetValueOrDefault(pair) + count;
                }
            (int, int) best = default;
            long bestCount = 0;
            string? bestText = null;
            foreach (var (pair, count) in pairCounts)
            {
                if (count < bestCount)
                    continue;
                string text = tokens[pair.Item1] + tokens[pair.Item2];
                if (count > bestCount || string.CompareOrdinal(text, bestText) < 0)
                    (best, bestCount, bestText) = (pair, count, text);
            }
            if (bestCount < 2)
                break; // nothing left that occurs twice: a larger vocabulary would only memorize
            // two different pairs can spell the same text ("a"+"bc", "ab"+"c"): one token serves both merges
            int id = tokens.IndexOf(bestText!);
            if (id < 0)
            {
                id = tokens.Count;
                tokens.Add(bestText!);
            }
            merges.Add(tokens[best.Item1] + " " + tokens[best.Item2]);
            foreach (var (symbols, _) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == best.Item1 && symbols[i + 1] == best.Item2)
                    {
                        symbols[i] = id;
                        symbols.RemoveAt(i + 1);
                    }
        }
        tokens.Add(ByteLevelBpeTokenizer.EndOfText);
        return new ByteLevelBpeTokenizer(tokens, merges);
    }

    private static List<(List<int> Symbols, long Count)> CountWords(IEnumerable<string> texts)
    {
        var pre = new PreTokenizer([PreTokenizerPatterns.GptTwo]);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var lengths = new List<int>();
        foreach (string text in texts)
        {
            int[] codepoints = text.EnumerateRunes().Select(r => r.Value).ToArray();
            pre.Split(codepoints, lengths);
            int at = 0;
            var sb = new StringBuilder();
            foreach (int length in lengths)
            {
                sb.Clear();
                for (int i = at; i < at + length; i++)
                    sb.Append(new Rune(codepoints[i]).ToString());
                at += length;
                string word = sb.ToString();
                counts[word] = counts.GetValueOrDefault(word) + 1;
            }
        }
        return counts.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (Encoding.UTF8.GetBytes(kv.Key).Select(b => (int)b).ToList(), kv.Value)).ToList();
    }
}
