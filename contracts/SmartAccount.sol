// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title Minimal EIP-1271 smart account for the local chain
/// @notice Stands in for a Mezo Passport smart account in sign-in tests: the account's address is not a key, so
/// an ECDSA signature cannot be recovered to it; instead its contract vouches for signatures made by its owner.
/// `isValidSignature` returns the EIP-1271 magic value 0x1626ba7e when `signature` is the owner's ECDSA
/// signature of `hash`, and 0xffffffff otherwise (it never reverts on a bad signature).
contract SmartAccount {
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 internal constant INVALID = 0xffffffff;
    // secp256k1 order / 2: signatures with a larger s are malleable twins and are refused (EIP-2).
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return INVALID;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) return INVALID;
        address signer = ecrecover(hash, v, r, s);
        if (signer == address(0) || signer != owner) return INVALID;
        return MAGIC_VALUE;
    }
}
