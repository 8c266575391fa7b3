using System.Buffers.Binary;
using OpenCvSharp;

namespace RealtimeAssistant.Server.OpenAi;

/// <summary>
/// An image_url part's data: URI (base64 PNG or JPEG) → BGR pixels; <see cref="FromFile"/> decodes
/// a remote image's bytes the same way (<see cref="RemoteImages"/>). The size is read from the file's header and checked against
/// the pixel limit before anything is decoded, so a small file that claims huge dimensions costs nothing.
/// </summary>
public static class DataUriImage
{
    public enum Kind { Png, Jpeg }

    public static Mat Decode(string url, long maxPixels, string param)
    {
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
            throw ApiError.BadRequest("image_url must be a data: URI (data:image/png;base64,... or data:image/jpeg;base64,...)", param, "invalid_image_url");
        var mediaType = DataUri.MediaType(url, "image", param, "invalid_image_url");
        var kind = mediaType switch
        {
            "image/png" => Kind.Png,
            "image/jpeg" or "image/jpg" => Kind.Jpeg,
            _ => throw ApiError.BadRequest($"unsupported image type '{Truncate(mediaType)}': send PNG (image/png) or JPEG (image/jpeg)", param, "invalid_image_format"),
        };
        var file = DataUri.Payload(url, "image", "data:image/png;base64,...", param, "invalid_image_url", "image_parse_error").AsSpan();

        if (Sniff(file) != kind)
            throw ApiError.BadRequest($"the image's data is not {(kind == Kind.Png ? "a PNG" : "a JPEG")} file, as its media type '{mediaType}' says", param, "invalid_image_format");
        return FromFile(file, maxPixels, param);
    }

    /// <summary>A PNG or JPEG file's bytes → BGR pixels, its size checked from its header before it is decoded.</summary>
    public static Mat FromFile(ReadOnlySpan<byte> file, long maxPixels, string param)
    {
        var kind = Sniff(file) ?? throw ApiError.BadRequest("the image is not a PNG or JPEG file", param, "invalid_image_format");
        var size = Dimensions(file, kind) ?? throw ApiError.BadRequest("the image is truncated or corrupt (its size cannot be read)", param, "image_parse_error");
        CheckPixels(size.Width, size.Height, maxPixels, param);

        Mat img;
        try { img = Cv2.ImDecode(file, ImreadModes.Color); }
        catch (OpenCVException) { throw ApiError.BadRequest("the image cannot be decoded", param, "image_parse_error"); }
        if (img.Empty())
        {
            img.Dispose();
            throw ApiError.BadRequest("the image cannot be decoded (corrupt or truncated)", param, "image_parse_error");
        }
        if ((long)img.Width * img.Height > maxPixels) // the decoder disagreed with the header
        {
            img.Dispose();
            CheckPixels(img.Width, img.Height, maxPixels, param);
        }
        return img;
    }

    static void CheckPixels(long width, long height, long maxPixels, string param)
    {
        if (width < 1 || height < 1)
            throw ApiError.BadRequest($"the image is {width}x{height} pixels", param, "image_parse_error");
        if (width * height > maxPixels)
            throw ApiError.BadRequest($"the image is {width}x{height} = {width * height:N0} pixels, over this server's limit of {maxPixels:N0}", param, "image_too_large");
    }

    public static Kind? Sniff(ReadOnlySpan<byte> file)
    {
        ReadOnlySpan<byte> png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        if (file.StartsWith(png)) return Kind.Png;
        if (file.Length >= 3 && file[0] == 0xFF && file[1] == 0xD8 && file[2] == 0xFF) return Kind.Jpeg;
        return null;
    }

    /// <summary>Width and height from a PNG's IHDR or a JPEG's first frame header (SOFn); null if not found.</summary>
    public static (long Width, long Height)? Dimensions(ReadOnlySpan<byte> file, Kind kind)
    {
        if (kind == Kind.Png)
        {
            if (file.Length < 24 || !file.Slice(12, 4).SequenceEqual("IHDR"u8)) return null;
            return (BinaryPrimitives.ReadUInt32BigEndian(file[16..]), BinaryPrimitives.ReadUInt32BigEndian(file[20..]));
        }
        int i = 2;
        while (i + 4 <= file.Length)
        {
            if (file[i] != 0xFF) return null;
            byte marker = file[i + 1];
            if (marker == 0xFF) { i++; continue; }                                           // fill byte
            if (marker == 0x01 || marker is >= 0xD0 and <= 0xD8) { i += 2; continue; }        // no length
            if (marker is 0xD9 or 0xDA) return null;                                          // end or scan before any frame header
            int length = BinaryPrimitives.ReadUInt16BigEndian(file[(i + 2)..]);
            if (length < 2) return null;
            if (marker is >= 0xC0 and <= 0xCF && marker is not (0xC4 or 0xC8 or 0xCC))
            {
                if (i + 9 > file.Length) return null;
                return (BinaryPrimitives.ReadUInt16BigEndian(file[(i + 7)..]), BinaryPrimitives.ReadUInt16BigEndian(file[(i + 5)..]));
            }
            i += 2 + length;
        }
        return null;
    }

    static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
