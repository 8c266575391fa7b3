using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Model.LlavaOneVision;

/// <summary>
/// LlavaOnevisionForConditionalGeneration's module tree under the first (llava-hf) naming
/// generation: vision_tower.vision_model…, multi_modal_projector.linear_1/2, image_newline,
/// language_model.model…, language_model.lm_head. <see cref="CheckpointNames"/> maps the newer
/// model.* / lm_head names onto these.
/// </summary>
public sealed class OneVisionModel : nn.Module
{
    public readonly VisionTower vision_tower;
    public readonly Projector multi_modal_projector;
    public readonly Parameter image_newline;
    public readonly LanguageModel language_model;
    public OneVisionConfig Config { get; }

    public OneVisionModel(OneVisionConfig cfg, TensorSpec spec) : base(nameof(OneVisionModel))
    {
        Config = cfg;
        vision_tower = new VisionTower(cfg.Llava, spec);
        multi_modal_projector = new Projector(cfg.Llava, spec);
        image_newline = spec.Param(cfg.Text.HiddenSize);
        language_model = new LanguageModel(cfg.Text, spec);
        RegisterComponents();
    }

    /// <summary>Tiles [N, 3, S, S] → projected features [N, side², D] (the tower's selected layer, then the projector).</summary>
    public Tensor TileFeatures(Tensor tiles)
    {
        var f = multi_modal_projector.forward(vision_tower.forward(tiles));
        int side = Config.TileSide;
        if (f.size(1) != side * side)
            throw new UserError($"the vision tower gives {f.size(1)} features per tile, not the {side}x{side} grid its image_size and patch_size imply");
        return f;
    }

    /// <summary>
    /// pack_image_features for one image alone in its prompt: the base tile's features, then the
    /// crops' grid (tiles side by side), unpadded to the image's aspect, shrunk by anyres_max_N, an
    /// image_newline after each row. Returns the rows and the final grid size.
    /// </summary>
    public (Tensor Features, int GridH, int GridW) PackAnyRes(Tensor tileFeatures, int height, int width)
    {
        int side = Config.TileSide;
        var best = AnyRes.SelectBestResolution(height, width, Config.Pinpoints);
        int tilesH = best.H / Config.TileSize, tilesW = best.W / Config.TileSize;
        if (tileFeatures.size(0) != 1 + tilesH * tilesW)
            throw new ArgumentException($"{tileFeatures.size(0)} tiles for a {tilesH}x{tilesW} pinpoint and its base");
        long d = tileFeatures.size(2);
        var baseFeatures = tileFeatures[0];
        // [tiles_h, tiles_w, side, side, D] → [D, tiles_h·side, tiles_w·side]: the crops' features as one grid.
        var grid = tileFeatures[1..].view(tilesH, tilesW, side, side, d).permute(4, 0, 2, 1, 3).reshape(d, tilesH * side, tilesW * side);
        var (top, h, left, w) = AnyRes.Unpad(height, width, tilesH * side, tilesW * side);
        grid = grid.narrow(1, top, h).narrow(2, left, w);
        var (sh, sw) = AnyRes.Downscale(h, w, side, Config.MaxTiles);
        if ((sh, sw) != (h, w))
            grid = F.interpolate(grid.unsqueeze(0), new long[] { sh, sw }, mode: InterpolationMode.Bilinear, align_corners: false)[0];
        grid = WithNewlines(grid);
        return (torch.cat(new[] { baseFeatures, grid }, 0), sh, sw);
    }

    /// <summary>One tile's features and one image_newline (an image among several, taken whole).</summary>
    public Tensor PackSingle(Tensor tileFeatures) => torch.cat(new[] { tileFeatures[0], Newline(tileFeatures).unsqueeze(0) }, 0);

    /// <summary>
    /// A video frame: the tile's grid bilinearly pooled to ⌈side/2⌉² (apply_pooling), then one
    /// image_newline, the layout transformers gives a one-frame video.
    /// </summary>
    public (Tensor Features, int Side) PackVideoFrame(Tensor tileFeatures)
    {
        int side = Config.TileSide, pooled = (side + 1) / 2;
        long d = tileFeatures.size(2);
        var grid = tileFeatures.view(1, side, side, d).permute(0, 3, 1, 2);
        grid = F.interpolate(grid, new long[] { pooled, pooled }, mode: InterpolationMode.Bilinear, align_corners: false);
        var rows = grid.permute(0, 2, 3, 1).reshape(pooled * pooled, d);
        return (torch.cat(new[] { rows, Newline(tileFeatures).unsqueeze(0) }, 0), pooled);
    }

    Tensor Newline(Tensor like) => image_newline.to_type(like.dtype);

    /// <summary>[D, H, W] → [H·(W+1), D]: each row followed by image_newline.</summary>
    Tensor WithNewlines(Tensor grid)
    {
        long d = grid.size(0), h = grid.size(1);
        var column = Newline(grid).view(d, 1, 1).expand(d, h, 1);
        return torch.cat(new[] { grid, column }, 2).flatten(1, 2).transpose(0, 1);
    }
}
