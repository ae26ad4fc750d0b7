"""GLIDE (Nichol et al. 2022), filtered release: the project's own implementation of OpenAI's glide-text2im.

Written from the package's structure and the GLIDE paper (no code copied) so that the released ``base.pt``
and ``upsample.pt`` load unchanged, with parameter names and shapes the package's; proven equal to the
package on recorded outputs (docs/protocols.md, GLIDE). Modules, in the order data flows:

* ``tokenizer``  GPT-2 byte-pair encoding with the shipped vocabulary, 128-token context and mask;
* ``text``       the text transformer that conditions the UNet;
* ``unet``       the text-conditional ADM UNet: the 64x64 base model and the super-resolution upsampler;
* ``diffusion``  the ``squaredcos_cap_v2`` / linear schedules, timestep respacing, the learned-variance
                 step and the DDIM step;
* ``config``     the package's default settings and building a network and its schedule from them;
* ``sampler``    the text2im recipe: classifier-free guidance on the base model, then the upsampler;
* ``adapter``    the ``glide`` / ``tiny-glide`` entries of the model registry.
"""
