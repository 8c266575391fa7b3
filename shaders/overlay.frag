#version 330 core
// Skia-rasterised text: premultiplied RGBA, blended with (ONE, ONE_MINUS_SRC_ALPHA).
in vec2 vUv;
uniform sampler2D uTex;
uniform float uOpacity;
out vec4 fragColor;

void main()
{
    fragColor = texture(uTex, vUv) * uOpacity;
}
