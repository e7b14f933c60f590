using System.Buffers;
using System.Text;
using Kiln.Tokenizers.PreTokenization;

namespace Kiln.Tokenizers;

/// <summary>
/// Byte-level BPE (<c>tokenizer.ggml.model = "gpt2"</c>) as llama.cpp's llm_tokenizer_bpe runs it: the text is split
/// into words by the pre-tokenizer named in <c>tokenizer.ggml.pre</c>, each word's UTF-8 bytes are spelled in GPT-2's
/// byte alphabet, and within a word the adjacent pair with the lowest merge rank is merged until no pair has one.
/// </summary>
internal sealed class BytePairTokenizer : Tokenizer
{
    private readonly PreTokenizer _preTokenizer;
    private readonly bool _ignoreMerges;

    // Merge parts are interned so that a pair lookup is one dictionary probe on two ints.
    private readonly Dictionary<string, int> _pieceIds = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _pieceIdsBySpan;
    private readonly Dictionary<long, int> _mergeRanks = new();
    private readonly int[] _mergeResults;

    public BytePairTokenizer(TokenizerData data)
        : this(data, BytePairPreset.For(data.Pre))
    {
    }

    private BytePairTokenizer(TokenizerData data, BytePairPreset preset)
        : base(data, new VocabularyDefaults(
            VocabularyKind.BytePair, BosId: preset.ClearsBos ? -1 : 11, EosId: 11, UnknownId: -1,
            AddSpacePrefix: false, AddBos: preset.AddBos, AddEos: false, CleanSpaces: preset.CleanSpaces))
    {
        Pre = preset.Name;
        _preTokenizer = new PreTokenizer(preset.Patterns);
        _ignoreMerges = preset.IgnoreMerges;
        _pieceIdsBySpan = _pieceIds.GetAlternateLookup<ReadOnlySpan<char>>();

        IReadOnlyList<string> merges = data.Merges
            ?? throw new InvalidDataException("tokenizer.ggml.merges is missing (a 'gpt2' tokenizer needs its BPE merges)");
        _mergeResults = new int[merges.Count];
        for (int rank = 0; rank < merges.Count; rank++)
        {
            string merge = merges[rank] ?? "";
            // llama.cpp splits at the first space after the first character; a line without one merges "" with "".
            int space = merge.Length > 1 ? merge.IndexOf(' ', 1) : -1;
            string first = space >= 0 ? merge[..space] : "";
            string second = space >= 0 ? merge[(space + 1)..] : "";
            int left = Intern(first);
            int right = Intern(second);
            _mergeResults[rank] = Intern(string.Concat(first, second));
            _mergeRanks.TryAdd(PairKey(left, right), rank); // the first rank of a repeated pair wins
        }
    }

    /// <summary>The pre-tokenizer in use ("default" when the file names none).</summary>
    public string Pre { get; }

    private protected override void EncodeFragments(string text, List<TextFragment> fragments, List<int> output)
    {
        var words = new List<int>();
        foreach (TextFragment fragment in fragments)
        {
            if (fragment.IsToken)
            {
                output.Add(fragment.TokenId);
                continue;
            }
            TokenizeText(text.AsSpan(fragment.Offset, fragment.Length), words, output);
        }
    }

    private void TokenizeText(ReadOnlySpan<char> text, List<int> words, List<int> output)
    {
        int[] codepoints = ArrayPool<int>.Shared.Rent(text.Length);
        char[] word = ArrayPool<char>.Shared.Rent(16);
        try
        {
            int count = 0;
            foreach (Rune rune in text.EnumerateRunes())
                codepoints[count++] = rune.Value;

            _preTokenizer.Split(codepoints.AsSpan(0, count), words);

            int start = 0;
            Span<byte> utf8 = stackalloc byte[4];
            foreach (int length in words)
            {
                if (word.Length < length * 4)
                {
                    ArrayPool<char>.Shared.Return(word);
                    word = ArrayPool<char>.Shared.Rent(length * 4);
                }
                int chars = 0;
                foreach (int cp in codepoints.AsSpan(start, length))
                {
                    int n = new Rune(cp).EncodeToUtf8(utf8);
                    for (int k = 0; k < n; k++)
                        word[chars++] = ByteLevelAlphabet.ByteToChar(utf8[k]);
                }
                TokenizeWord(word.AsSpan(0, chars), output);
                start += length;
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(codepoints);
            ArrayPool<char>.Shared.Return(word);
        }
    }

    /// <summary>Merges one byte-alphabet word and emits its tokens.</summary>
    internal void TokenizeWord(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.IsEmpty)
            return;
        if (_ignoreMerges && IdsBySpan.TryGetValue(word, out int whole))
        {
            output.Add(whole);
            return;
        }

        // Every byte-alphabet character is one UTF-16 unit, so characters are the initial symbols.
        Symbol[] symbols = ArrayPool<Symbol>.Shared.Rent(word.Length);
        try
        {
            for (int i = 0; i < word.Length; i++)
            {
                int piece = _pieceIdsBySpan.TryGetValue(word.Slice(i, 1), out int p) ? p : -1;
                symbols[i] = new Symbol(i, 1, piece, i - 1, i + 1 == word.Length ? -1 : i + 1);
            }

            var queue = new PriorityQueue<Bigram, (int Rank, int Left)>(word.Length);
            for (int i = 1; i < word.Length; i++)
                TryAddBigram(symbols, i - 1, i, queue);

            while (queue.TryDequeue(out Bigram bigram, out _))
            {
                ref Symbol left = ref symbols[bigram.Left];
                ref Symbol right = ref symbols[bigram.Right];
                // stale: one side has merged with something else since the pair was queued
                if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bigram.Size)
                    continue;

                left.Length += right.Length;
                left.Piece = _mergeResults[bigram.Rank];
                right.Length = 0;
                left.Next = right.Next;
                if (right.Next >= 0)
                    symbols[right.Next].Prev = bigram.Left;

                TryAddBigram(symbols, left.Prev, bigram.Left, queue);
                TryAddBigram(symbols, bigram.Left, left.Next, queue);
            }

            for (int i = 0; i != -1; i = symbols[i].Next)
            {
                ReadOnlySpan<char> piece = word.Slice(symbols[i].Start, symbols[i].Length);
                if (IdsBySpan.TryGetValue(piece, out int id))
                {
                    output.Add(id);
                    continue;
                }
                // llama.cpp then looks up each UTF-8 byte of the piece as a one-byte token; only ASCII can match.
                foreach (char c in piece)
                    if (c < 0x80 && IdsBySpan.TryGetValue([c], out int single))
                        output.Add(single);
            }
        }
        finally
        {
            ArrayPool<Symbol>.Shared.Return(symbols);
        }
    }

    private void TryAddBigram(Symbol[] symbols, int left, int right, PriorityQueue<Bigram, (int, int)> queue)
    {
        if (left == -1 || right == -1)
            return;
        int leftPiece = symbols[left].Piece;
        int rightPiece = symbols[right].Piece;
        if (leftPiece < 0 || rightPiece < 0 || !_mergeRanks.TryGetValue(PairKey(leftPiece, rightPiece), out int rank))
            return;
        queue.Enqueue(new Bigram(left, right, rank, symbols[left].Length + symbols[right].Length), (rank, left));
    }

    private int Intern(string piece)
    {
        if (!_pieceIds.TryGetValue(piece, out int id))
        {
            id = _pieceIds.Count;
            _pieceIds.Add(piece, id);
        }
        return id;
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    private struct Symbol(int start, int length, int piece, int prev, int next)
    {
        public int Start = start;
        public int Length = length;
        public int Piece = piece;
        public int Prev = prev;
        public int Next = next;
    }

    private readonly record struct Bigram(int Left, int Right, int Rank, int Size);
}
