using Kiln.Tensors;

namespace Kiln.Quantization;

/// <summary>
/// What happens to one tensor: its source type and the type it is written as (equal when it is copied, as
/// norms and 1-D tensors are). <see cref="FallbackFrom"/> is set when the planned type did not fit the row
/// length and a type with a smaller block replaced it.
/// </summary>
public sealed record TensorQuantization(
    string Name, long[] Dimensions, GgmlType SourceType, GgmlType TargetType, GgmlType? FallbackFrom)
{
    public long Elements => Dimensions.Aggregate(1L, (a, d) => a * d);

    public long RowLength => Dimensions[0];

    public long Rows => Elements / Dimensions[0];

    public long SourceBytes => Rows * GgmlTypeTraits.RowBytes(SourceType, RowLength);

    public long TargetBytes => Rows * GgmlTypeTraits.RowBytes(TargetType, RowLength);

    public bool IsCopied => SourceType == TargetType;
}
