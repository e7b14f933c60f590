namespace Kiln.Serving.Constraints;

/// <summary>
/// One state of a byte-level pushdown recognizer of the JSON texts a <see cref="JsonSchemaNode"/> admits.
/// Immutable: <see cref="Step"/> returns the state after one more byte, or null when no valid text starts with
/// the bytes so far plus that one, so a token mask can branch from one state over a whole vocabulary trie.
/// </summary>
/// <remarks>
/// The stack is a chain of states, one frame each (root, object, array, string, number, literal). Whitespace is
/// allowed between tokens but never more than <see cref="MaxWhitespaceRun"/> bytes in a row, and numbers have
/// bounded digit counts, so a model cannot stall in an endless run of filler; none is allowed after the value.
/// Strings must be valid UTF-8 and may not use <c>\u</c> escapes in U+D000..U+DFFF (which holds the surrogates,
/// whose pairing a byte-level machine would have to track).
/// </remarks>
public sealed class JsonGrammarState
{
    public const int MaxWhitespaceRun = 8;
    public const int MaxIntegerDigits = 15;
    public const int MaxFractionDigits = 15;
    public const int MaxExponentDigits = 3;

    private static readonly JsonSchemaNode StringNode = new() { Kind = JsonSchemaKind.String };
    private static readonly JsonSchemaNode NumberNode = new() { Kind = JsonSchemaKind.Number };
    private static readonly JsonSchemaNode BooleanNode = new() { Kind = JsonSchemaKind.Boolean };
    private static readonly JsonSchemaNode NullNode = new() { Kind = JsonSchemaKind.Null };
    private static readonly JsonSchemaNode AnyArray = new() { Kind = JsonSchemaKind.Array };
    private static readonly byte[][] BooleanLiterals = ["true"u8.ToArray(), "false"u8.ToArray()];
    private static readonly byte[][] NullLiteral = ["null"u8.ToArray()];

    private readonly Frame _top;
    private readonly JsonGrammarState? _parent;

    private JsonGrammarState(Frame top, JsonGrammarState? parent)
    {
        _top = top;
        _parent = parent;
    }

    /// <summary>The state before the first byte of a value of <paramref name="schema"/>.</summary>
    public static JsonGrammarState Start(JsonSchemaNode schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        return new(new RootFrame(schema, RootPhase.Before, 0), null);
    }

    /// <summary>True when the text so far is a whole value, so the text may end here.</summary>
    public bool CanEnd
    {
        get
        {
            Frame top = _top;
            JsonGrammarState? parent = _parent;
            while (true)
            {
                if (top is RootFrame { Phase: RootPhase.Done })
                    return true;
                if (!top.CanFinish || parent is null)
                    return false;
                top = parent._top.ChildCompleted();
                parent = parent._parent;
            }
        }
    }

    /// <summary>True when the text is a whole value and no byte may follow.</summary>
    public bool IsComplete
    {
        get
        {
            if (_top is RootFrame { Phase: RootPhase.Done })
                return true;
            if (!CanEnd)
                return false;
            for (int b = 0; b < 256; b++)
            {
                if (Step((byte)b) is not null)
                    return false;
            }
            return true;
        }
    }

    /// <summary>The state after <paramref name="b"/>, or null when <paramref name="b"/> cannot come next.</summary>
    public JsonGrammarState? Step(byte b)
    {
        Frame top = _top;
        JsonGrammarState? parent = _parent;
        while (true)
        {
            Outcome result = top.Feed(b);
            switch (result.Kind)
            {
                case FeedKind.Reject:
                    return null;
                case FeedKind.Replace:
                    return ReferenceEquals(result.Next, _top) && ReferenceEquals(parent, _parent) ? this : new(result.Next!, parent);
                case FeedKind.PushValue:
                {
                    Outcome child = StartValue(result.Child!, b);
                    return child.Kind switch
                    {
                        FeedKind.Replace => new(child.Next!, new JsonGrammarState(result.Next!, parent)),
                        FeedKind.Complete => new(result.Next!.ChildCompleted(), parent),
                        _ => null,
                    };
                }
                case FeedKind.Complete:
                    return new(parent!._top.ChildCompleted(), parent._parent);
                case FeedKind.CompleteBefore:
                    // The value ended just before b: hand b to the enclosing frame.
                    top = parent!._top.ChildCompleted();
                    parent = parent._parent;
                    continue;
                default:
                    throw new InvalidOperationException($"unknown step result {result.Kind}");
            }
        }
    }

    private static Outcome StartValue(JsonSchemaNode schema, byte b)
    {
        switch (schema.Kind)
        {
            case JsonSchemaKind.Any:
                JsonSchemaNode? concrete = b switch
                {
                    (byte)'{' => JsonSchemaNode.AnyObject,
                    (byte)'[' => AnyArray,
                    (byte)'"' => StringNode,
                    (byte)'t' or (byte)'f' => BooleanNode,
                    (byte)'n' => NullNode,
                    (byte)'-' or (>= (byte)'0' and <= (byte)'9') => NumberNode,
                    _ => null,
                };
                return concrete is null ? Outcome.Reject : StartValue(concrete, b);
            case JsonSchemaKind.AnyOf:
                foreach (JsonSchemaNode alternative in schema.Alternatives)
                {
                    if (alternative.CanStartWith(b))
                        return StartValue(alternative, b);
                }
                return Outcome.Reject;
            case JsonSchemaKind.Object:
                return new ObjectFrame(schema, ObjectPhase.Open, 0, -1, 0, [], 0).Feed(b);
            case JsonSchemaKind.Array:
                return new ArrayFrame(schema, ArrayPhase.Open, 0, 0).Feed(b);
            case JsonSchemaKind.String:
                return StringFrame.OpenBounded(schema.MinLength, schema.MaxLength).Feed(b);
            case JsonSchemaKind.Number:
                return new NumberFrame(false, NumberPhase.Start, 0).Feed(b);
            case JsonSchemaKind.Integer:
                return new NumberFrame(true, NumberPhase.Start, 0).Feed(b);
            case JsonSchemaKind.Boolean:
                return new LiteralFrame(BooleanLiterals, 0, false).Feed(b);
            case JsonSchemaKind.Null:
                return new LiteralFrame(NullLiteral, 0, false).Feed(b);
            case JsonSchemaKind.Literals:
                return new LiteralFrame(schema.Literals, 0, false).Feed(b);
            default:
                return Outcome.Reject;
        }
    }

    private static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t';

    private static bool IsDigit(byte b) => b >= '0' && b <= '9';

    private enum FeedKind
    {
        Reject,
        /// <summary>b consumed; the frame becomes Next.</summary>
        Replace,
        /// <summary>b starts a child value of schema Child; the frame becomes Next while the child runs.</summary>
        PushValue,
        /// <summary>b consumed and it ended the value.</summary>
        Complete,
        /// <summary>The value had ended before b, which belongs to the enclosing frame.</summary>
        CompleteBefore,
    }

    private readonly record struct Outcome(FeedKind Kind, Frame? Next, JsonSchemaNode? Child)
    {
        public static Outcome Reject => new(FeedKind.Reject, null, null);
        public static Outcome Complete => new(FeedKind.Complete, null, null);
        public static Outcome CompleteBefore => new(FeedKind.CompleteBefore, null, null);
        public static Outcome Replace(Frame next) => new(FeedKind.Replace, next, null);
        public static Outcome Push(Frame next, JsonSchemaNode child) => new(FeedKind.PushValue, next, child);
    }

    private abstract class Frame
    {
        public abstract Outcome Feed(byte b);

        /// <summary>The frame after the child value it pushed has ended.</summary>
        public virtual Frame ChildCompleted() => throw new InvalidOperationException($"{GetType().Name} has no child value");

        /// <summary>The value is whole, but could still go on (numbers, literals that prefix others).</summary>
        public virtual bool CanFinish => false;
    }

    private enum RootPhase { Before, Waiting, Done }

    private sealed class RootFrame(JsonSchemaNode schema, RootPhase phase, int whitespace) : Frame
    {
        public RootPhase Phase => phase;

        public override Outcome Feed(byte b)
        {
            if (phase != RootPhase.Before)
                return Outcome.Reject;
            if (IsWhitespace(b))
                return whitespace < MaxWhitespaceRun ? Outcome.Replace(new RootFrame(schema, phase, whitespace + 1)) : Outcome.Reject;
            return Outcome.Push(new RootFrame(schema, RootPhase.Waiting, 0), schema);
        }

        public override Frame ChildCompleted() => new RootFrame(schema, RootPhase.Done, 0);
    }

    private enum ObjectPhase { Open, AfterOpen, InKey, WaitingKey, AfterKey, BeforeValue, WaitingValue, AfterValue, AfterComma }

    /// <param name="next">Index of the first declared property that may still come.</param>
    /// <param name="current">The declared property whose key was read.</param>
    /// <param name="candidates">Declared properties whose key still matches (<see cref="ObjectPhase.InKey"/>).</param>
    /// <param name="keyPosition">Bytes of the key read after its opening quote.</param>
    private sealed class ObjectFrame(JsonSchemaNode schema, ObjectPhase phase, int next, int current, int whitespace, int[] candidates, int keyPosition) : Frame
    {
        private bool Declared => schema.Properties.Count > 0;

        public override Outcome Feed(byte b)
        {
            switch (phase)
            {
                case ObjectPhase.Open:
                    return b == '{' ? Outcome.Replace(With(ObjectPhase.AfterOpen)) : Outcome.Reject;
                case ObjectPhase.AfterOpen:
                    if (IsWhitespace(b))
                        return Space();
                    if (b == '}')
                        return RequiredRemain() ? Outcome.Reject : Outcome.Complete;
                    return b == '"' ? StartKey() : Outcome.Reject;
                case ObjectPhase.AfterComma:
                    if (IsWhitespace(b))
                        return Space();
                    return b == '"' ? StartKey() : Outcome.Reject;
                case ObjectPhase.InKey:
                    return KeyByte(b);
                case ObjectPhase.AfterKey:
                    if (IsWhitespace(b))
                        return Space();
                    return b == ':' ? Outcome.Replace(With(ObjectPhase.BeforeValue)) : Outcome.Reject;
                case ObjectPhase.BeforeValue:
                    if (IsWhitespace(b))
                        return Space();
                    return Outcome.Push(With(ObjectPhase.WaitingValue), Declared ? schema.Properties[current].Schema : schema.AdditionalProperties!);
                case ObjectPhase.AfterValue:
                    if (IsWhitespace(b))
                        return Space();
                    if (b == ',')
                        return MoreKeys() ? Outcome.Replace(With(ObjectPhase.AfterComma)) : Outcome.Reject;
                    if (b == '}')
                        return RequiredRemain() ? Outcome.Reject : Outcome.Complete;
                    return Outcome.Reject;
                default:
                    return Outcome.Reject;
            }
        }

        public override Frame ChildCompleted() => phase switch
        {
            ObjectPhase.WaitingKey => With(ObjectPhase.AfterKey),
            ObjectPhase.WaitingValue => new ObjectFrame(schema, ObjectPhase.AfterValue, Declared ? current + 1 : next, -1, 0, [], 0),
            _ => base.ChildCompleted(),
        };

        private ObjectFrame With(ObjectPhase newPhase) => new(schema, newPhase, next, current, 0, [], 0);

        private Outcome Space() => whitespace < MaxWhitespaceRun
            ? Outcome.Replace(new ObjectFrame(schema, phase, next, current, whitespace + 1, candidates, keyPosition))
            : Outcome.Reject;

        private bool RequiredRemain()
        {
            for (int i = next; i < schema.Properties.Count; i++)
            {
                if (schema.Properties[i].Required)
                    return true;
            }
            return false;
        }

        private bool MoreKeys() => Declared ? next < schema.Properties.Count : schema.AdditionalProperties is not null;

        private Outcome StartKey()
        {
            if (!Declared)
                return schema.AdditionalProperties is null ? Outcome.Reject : Outcome.Push(With(ObjectPhase.WaitingKey), StringNode);
            // Optional properties may be skipped, a required one may not: the key is one of the properties from
            // `next` up to and including the first required one.
            var open = new List<int>();
            for (int i = next; i < schema.Properties.Count; i++)
            {
                open.Add(i);
                if (schema.Properties[i].Required)
                    break;
            }
            return open.Count == 0 ? Outcome.Reject : Outcome.Replace(new ObjectFrame(schema, ObjectPhase.InKey, next, -1, 0, [.. open], 0));
        }

        private Outcome KeyByte(byte b)
        {
            int matches = 0;
            int finished = -1;
            foreach (int i in candidates)
            {
                byte[] tail = schema.Properties[i].KeyTail;
                if (keyPosition < tail.Length && tail[keyPosition] == b)
                {
                    matches++;
                    if (keyPosition + 1 == tail.Length)
                        finished = i;
                }
            }
            if (matches == 0)
                return Outcome.Reject;
            // The closing quote ends every key, so a finished key has no longer rival.
            if (finished >= 0)
                return Outcome.Replace(new ObjectFrame(schema, ObjectPhase.AfterKey, next, finished, 0, [], 0));
            int[] kept = matches == candidates.Length
                ? candidates
                : candidates.Where(i => schema.Properties[i].KeyTail is var t && keyPosition < t.Length && t[keyPosition] == b).ToArray();
            return Outcome.Replace(new ObjectFrame(schema, ObjectPhase.InKey, next, -1, 0, kept, keyPosition + 1));
        }
    }

    private enum ArrayPhase { Open, AfterOpen, Waiting, AfterValue, AfterComma }

    private sealed class ArrayFrame(JsonSchemaNode schema, ArrayPhase phase, int count, int whitespace) : Frame
    {
        public override Outcome Feed(byte b)
        {
            switch (phase)
            {
                case ArrayPhase.Open:
                    return b == '[' ? Outcome.Replace(new ArrayFrame(schema, ArrayPhase.AfterOpen, 0, 0)) : Outcome.Reject;
                case ArrayPhase.AfterOpen:
                    if (IsWhitespace(b))
                        return Space();
                    if (b == ']')
                        return schema.MinItems == 0 ? Outcome.Complete : Outcome.Reject;
                    return schema.MaxItems > 0 ? Outcome.Push(new ArrayFrame(schema, ArrayPhase.Waiting, count, 0), schema.Items) : Outcome.Reject;
                case ArrayPhase.AfterComma:
                    if (IsWhitespace(b))
                        return Space();
                    return Outcome.Push(new ArrayFrame(schema, ArrayPhase.Waiting, count, 0), schema.Items);
                case ArrayPhase.AfterValue:
                    if (IsWhitespace(b))
                        return Space();
                    if (b == ',')
                        return count < schema.MaxItems ? Outcome.Replace(new ArrayFrame(schema, ArrayPhase.AfterComma, count, 0)) : Outcome.Reject;
                    if (b == ']')
                        return count >= schema.MinItems ? Outcome.Complete : Outcome.Reject;
                    return Outcome.Reject;
                default:
                    return Outcome.Reject;
            }
        }

        public override Frame ChildCompleted() =>
            phase == ArrayPhase.Waiting ? new ArrayFrame(schema, ArrayPhase.AfterValue, count + 1, 0) : base.ChildCompleted();

        private Outcome Space() => whitespace < MaxWhitespaceRun ? Outcome.Replace(new ArrayFrame(schema, phase, count, whitespace + 1)) : Outcome.Reject;
    }

    private enum StringPhase { Open, Normal, Escape, Hex, Utf8 }

    /// <summary>
    /// A string, counting characters (code points) only when the schema bounds its length. Unbounded string states
    /// are few, so they are shared instances: walking string content allocates nothing.
    /// </summary>
    private sealed class StringFrame : Frame
    {
        public static readonly StringFrame Open = new(StringPhase.Open, 0, 0, 0);
        private static readonly StringFrame Normal = new(StringPhase.Normal, 0, 0, 0);
        private static readonly StringFrame Escape = new(StringPhase.Escape, 0, 0, 0);
        private static readonly StringFrame[] Hex = [new(StringPhase.Hex, 1, 0, 0), new(StringPhase.Hex, 2, 0, 0), new(StringPhase.Hex, 3, 0, 0), new(StringPhase.Hex, 4, 0, 0)];
        // Continuation bytes still needed, with the range of the next one (UTF-8's table 3-7 for the first after the lead byte).
        private static readonly StringFrame[] Continuation = [new(StringPhase.Utf8, 1, 0x80, 0xBF), new(StringPhase.Utf8, 2, 0x80, 0xBF), new(StringPhase.Utf8, 3, 0x80, 0xBF)];

        private readonly StringPhase _phase;
        private readonly int _left;
        private readonly byte _low;
        private readonly byte _high;
        private readonly bool _bounded;
        private readonly int _count;
        private readonly int _min;
        private readonly int _max;

        private StringFrame(StringPhase phase, int left, int low, int high, bool bounded = false, int count = 0, int min = 0, int max = int.MaxValue)
        {
            _phase = phase;
            _left = left;
            _low = (byte)low;
            _high = (byte)high;
            _bounded = bounded;
            _count = count;
            _min = min;
            _max = max;
        }

        /// <summary>The opening state of a string of <paramref name="min"/> to <paramref name="max"/> characters.</summary>
        public static StringFrame OpenBounded(int min, int max) =>
            min == 0 && max == int.MaxValue ? Open : new StringFrame(StringPhase.Open, 0, 0, 0, true, 0, min, max);

        public override Outcome Feed(byte b)
        {
            switch (_phase)
            {
                case StringPhase.Open:
                    return b == '"' ? To(StringPhase.Normal, 0, 0, 0, false) : Outcome.Reject;
                case StringPhase.Normal:
                    if (b == '"')
                        return _count >= _min ? Outcome.Complete : Outcome.Reject;
                    if (b < 0x20 || _count >= _max)
                        return Outcome.Reject;
                    if (b == '\\')
                        return To(StringPhase.Escape, 0, 0, 0, true);
                    if (b < 0x80)
                        return _bounded ? To(StringPhase.Normal, 0, 0, 0, true) : Outcome.Replace(this);
                    return b switch
                    {
                        >= 0xC2 and <= 0xDF => To(StringPhase.Utf8, 1, 0x80, 0xBF, true),
                        0xE0 => To(StringPhase.Utf8, 2, 0xA0, 0xBF, true),
                        0xED => To(StringPhase.Utf8, 2, 0x80, 0x9F, true),
                        >= 0xE1 and <= 0xEF => To(StringPhase.Utf8, 2, 0x80, 0xBF, true),
                        0xF0 => To(StringPhase.Utf8, 3, 0x90, 0xBF, true),
                        >= 0xF1 and <= 0xF3 => To(StringPhase.Utf8, 3, 0x80, 0xBF, true),
                        0xF4 => To(StringPhase.Utf8, 3, 0x80, 0x8F, true),
                        _ => Outcome.Reject,
                    };
                case StringPhase.Escape:
                    if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t')
                        return To(StringPhase.Normal, 0, 0, 0, false);
                    return b == 'u' ? To(StringPhase.Hex, 4, 0, 0, false) : Outcome.Reject;
                case StringPhase.Hex:
                    bool hex = IsDigit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
                    if (!hex || (_left == 4 && (b == 'd' || b == 'D')))
                        return Outcome.Reject;
                    return _left == 1 ? To(StringPhase.Normal, 0, 0, 0, false) : To(StringPhase.Hex, _left - 1, 0, 0, false);
                case StringPhase.Utf8:
                    if (b < _low || b > _high)
                        return Outcome.Reject;
                    return _left == 1 ? To(StringPhase.Normal, 0, 0, 0, false) : To(StringPhase.Utf8, _left - 1, 0x80, 0xBF, false);
                default:
                    return Outcome.Reject;
            }
        }

        /// <param name="starts">Whether the byte began a new character (counted against the bounds).</param>
        private Outcome To(StringPhase phase, int left, int low, int high, bool starts)
        {
            if (_bounded)
                return Outcome.Replace(new StringFrame(phase, left, low, high, true, _count + (starts ? 1 : 0), _min, _max));
            return Outcome.Replace(phase switch
            {
                StringPhase.Normal => Normal,
                StringPhase.Escape => Escape,
                StringPhase.Hex => Hex[left - 1],
                StringPhase.Utf8 when low == 0x80 && high == 0xBF => Continuation[left - 1],
                _ => new StringFrame(phase, left, low, high),
            });
        }
    }

    private enum NumberPhase { Start, Minus, Zero, Integer, Dot, Fraction, Exponent, ExponentSign, ExponentDigits }

    private sealed class NumberFrame(bool integerOnly, NumberPhase phase, int digits) : Frame
    {
        public override bool CanFinish => phase is NumberPhase.Zero or NumberPhase.Integer or NumberPhase.Fraction or NumberPhase.ExponentDigits;

        public override Outcome Feed(byte b)
        {
            bool digit = IsDigit(b);
            switch (phase)
            {
                case NumberPhase.Start:
                    if (b == '-')
                        return To(NumberPhase.Minus, 0);
                    goto case NumberPhase.Minus;
                case NumberPhase.Minus:
                    if (b == '0')
                        return To(NumberPhase.Zero, 0);
                    return digit ? To(NumberPhase.Integer, 1) : Outcome.Reject;
                case NumberPhase.Zero:
                    return FractionOrExponent(b);
                case NumberPhase.Integer:
                    if (digit && digits < MaxIntegerDigits)
                        return To(NumberPhase.Integer, digits + 1);
                    return FractionOrExponent(b);
                case NumberPhase.Dot:
                    return digit ? To(NumberPhase.Fraction, 1) : Outcome.Reject;
                case NumberPhase.Fraction:
                    if (digit && digits < MaxFractionDigits)
                        return To(NumberPhase.Fraction, digits + 1);
                    if (b is (byte)'e' or (byte)'E')
                        return To(NumberPhase.Exponent, 0);
                    return Outcome.CompleteBefore;
                case NumberPhase.Exponent:
                    if (b is (byte)'+' or (byte)'-')
                        return To(NumberPhase.ExponentSign, 0);
                    return digit ? To(NumberPhase.ExponentDigits, 1) : Outcome.Reject;
                case NumberPhase.ExponentSign:
                    return digit ? To(NumberPhase.ExponentDigits, 1) : Outcome.Reject;
                case NumberPhase.ExponentDigits:
                    if (digit && digits < MaxExponentDigits)
                        return To(NumberPhase.ExponentDigits, digits + 1);
                    return Outcome.CompleteBefore;
                default:
                    return Outcome.Reject;
            }
        }

        private Outcome FractionOrExponent(byte b)
        {
            if (!integerOnly && b == '.')
                return To(NumberPhase.Dot, 0);
            if (!integerOnly && b is (byte)'e' or (byte)'E')
                return To(NumberPhase.Exponent, 0);
            return Outcome.CompleteBefore;
        }

        private Outcome To(NumberPhase newPhase, int newDigits) => Outcome.Replace(new NumberFrame(integerOnly, newPhase, newDigits));
    }

    /// <summary>Matches one of a fixed set of texts (true/false, null, enum values).</summary>
    private sealed class LiteralFrame(IReadOnlyList<byte[]> candidates, int position, bool canFinish) : Frame
    {
        public override bool CanFinish => canFinish;

        public override Outcome Feed(byte b)
        {
            int matches = 0;
            bool ends = false;
            bool continues = false;
            foreach (byte[] text in candidates)
            {
                if (position < text.Length && text[position] == b)
                {
                    matches++;
                    ends |= position + 1 == text.Length;
                    continues |= position + 1 < text.Length;
                }
            }
            if (matches == 0)
                return canFinish ? Outcome.CompleteBefore : Outcome.Reject;
            if (!continues)
                return Outcome.Complete;
            IReadOnlyList<byte[]> kept = matches == candidates.Count
                ? candidates
                : candidates.Where(t => position < t.Length && t[position] == b).ToArray();
            return Outcome.Replace(new LiteralFrame(kept, position + 1, ends));
        }
    }
}
