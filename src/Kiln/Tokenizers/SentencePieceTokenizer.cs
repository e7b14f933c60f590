using System.Buffers;
using System.Text;

namespace Kiln.Tokenizers;

/// <summary>
/// SentencePiece BPE (<c>tokenizer.ggml.model = "llama"</c>) as llama.cpp's llm_tokenizer_spm runs it: spaces become
/// "▁", the text is cut into characters, and the adjacent pair whose concatenation is the highest-scoring token is
/// merged until no pair is a token; characters left without a token fall back to &lt;0xNN&gt; byte tokens.
/// </summary>
internal sealed class SentencePieceTokenizer : Tokenizer
{
    private const char Space = '\u2581';

    private readonly int[] _byteTokens;

    public SentencePieceTokenizer(TokenizerData data)
        : base(data, new VocabularyDefaults(
            VocabularyKind.SentencePiece, BosId: 1, EosId: 2, UnknownId: 0,
            AddSpacePrefix: true, AddBos: true, AddEos: false, CleanSpaces: false))
    {
        _byteTokens = new int[256];
        Span<char> hex = stackalloc char[6];
        for (int b = 0; b < 256; b++)
        {
            // llama.cpp's byte_to_token: "<0xNN>", else the byte as a one-character piece.
            $"<0x{b:X2}>".AsSpan().CopyTo(hex);
            if (IdsBySpan.TryGetValue(hex, out int id))
                _byteTokens[b] = id;
            else if (b < 0x80 && IdsBySpan.TryGetValue([(char)b], out id))
                _byteTokens[b] = id;
            else
                _byteTokens[b] = -1;
        }
    }

    private protected override void EncodeFragments(string text, List<TextFragment> fragments, List<int> output)
    {
        bool afterSpecial = true; // the start of the input counts as following a special token
        foreach (TextFragment fragment in fragments)
        {
            if (fragment.IsToken)
            {
                output.Add(fragment.TokenId);
                afterSpecial = true;
                continue;
            }

            bool prefix = AddSpacePrefix && afterSpecial;
            int length = fragment.Length + (prefix ? 1 : 0);
            char[] buffer = ArrayPool<char>.Shared.Rent(length);
            try
            {
                int k = 0;
                if (prefix)
                    buffer[k++] = Space;
                foreach (char c in text.AsSpan(fragment.Offset, fragment.Length))
                    buffer[k++] = c == ' ' ? Space : c;
                TokenizeEscaped(buffer.AsSpan(0, length), output);
            }
            finally
            {
                ArrayPool<char>.Shared.Return(buffer);
            }
            afterSpecial = false;
        }
    }

    /// <summary>Runs the merge loop over text whose spaces are already "▁".</summary>
    internal void TokenizeEscaped(ReadOnlySpan<char> text, List<int> output)
    {
        if (text.IsEmpty)
            return;

        Symbol[] symbols = ArrayPool<Symbol>.Shared.Rent(text.Length);
        try
        {
            int count = 0;
            for (int offset = 0; offset < text.Length;)
            {
                int length = char.IsHighSurrogate(text[offset]) && offset + 1 < text.Length && char.IsLowSurrogate(text[offset + 1]) ? 2 : 1;
                symbols[count] = new Symbol(offset, length, count - 1, offset + length == text.Length ? -1 : count + 1);
                count++;
                offset += length;
            }

            var queue = new PriorityQueue<Bigram, Bigram>(Math.Max(count, 1), BigramOrder.Instance);
            for (int i = 1; i < count; i++)
                TryAddBigram(text, symbols, i - 1, i, queue);

            while (queue.TryDequeue(out Bigram bigram, out _))
            {
                ref Symbol left = ref symbols[bigram.Left];
                ref Symbol right = ref symbols[bigram.Right];
                // stale: one side has merged with something else since the pair was queued
                if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bigram.Size)
                    continue;

                left.Length += right.Length;
                right.Length = 0;
                left.Next = right.Next;
                if (right.Next >= 0)
                    symbols[right.Next].Prev = bigram.Left;

                TryAddBigram(text, symbols, left.Prev, bigram.Left, queue);
                TryAddBigram(text, symbols, bigram.Left, left.Next, queue);
            }

            for (int i = 0; i != -1; i = symbols[i].Next)
                Resegment(text.Slice(symbols[i].Start, symbols[i].Length), output);
        }
        finally
        {
            ArrayPool<Symbol>.Shared.Return(symbols);
        }
    }

    private void TryAddBigram(ReadOnlySpan<char> text, Symbol[] symbols, int left, int right, PriorityQueue<Bigram, Bigram> queue)
    {
        if (left == -1 || right == -1)
            return;
        int size = symbols[left].Length + symbols[right].Length;
        if (!IdsBySpan.TryGetValue(text.Slice(symbols[left].Start, size), out int id))
            return;
        var bigram = new Bigram(left, right, Scores[id], size);
        queue.Enqueue(bigram, bigram);
    }

    // A symbol that is not a token becomes byte tokens. (llama.cpp would first try to undo the merge that formed it,
    // but every merged symbol is a token by construction, so only single characters reach this fallback.)
    private void Resegment(ReadOnlySpan<char> piece, List<int> output)
    {
        if (IdsBySpan.TryGetValue(piece, out int id))
        {
            output.Add(id);
            return;
        }
        Span<byte> utf8 = piece.Length <= 16 ? stackalloc byte[48] : new byte[piece.Length * 3];
        int count = Encoding.UTF8.GetBytes(piece, utf8);
        foreach (byte b in utf8[..count])
        {
            int byteToken = _byteTokens[b];
            if (byteToken < 0)
                byteToken = UnknownId;
            if (byteToken < 0)
                throw new InvalidOperationException($"the vocabulary has neither a byte token for 0x{b:X2} nor an unknown token");
            output.Add(byteToken);
        }
    }

    private struct Symbol(int start, int length, int prev, int next)
    {
        public int Start = start;
        public int Length = length;
        public int Prev = prev;
        public int Next = next;
    }

    private readonly record struct Bigram(int Left, int Right, float Score, int Size);

    /// <summary>Highest score first; among equal scores the leftmost pair (llama.cpp's llm_bigram_spm order).</summary>
    private sealed class BigramOrder : IComparer<Bigram>
    {
        public static readonly BigramOrder Instance = new();

        public int Compare(Bigram x, Bigram y)
        {
            if (x.Score > y.Score)
                return -1;
            if (x.Score < y.Score)
                return 1;
            return x.Left.CompareTo(y.Left);
        }
    }
}
